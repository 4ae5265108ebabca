import { sql, type SQL } from "drizzle-orm";
import { WEBHOOK_TEST_EVENT } from "../../schema";

/**
 * Per endpoint, not per delivery: one send at a time, and an endpoint that fails (no answer, 5xx, 408, 429) is held
 * as a whole — nothing is sent to it until `webhooks.held_until`, which backs off with `webhooks.failures` (5 s
 * doubling to 1 h) whichever delivery was tried. Per-delivery retries alone let an endpoint that is down take one
 * attempt per pending row (each up to the 15-s send timeout), so a backlog of events — ten webhooks and a
 * pause/resume loop make one fast — kept the shared consumers busy with sends that could not succeed while other
 * users' events queued behind them. Any other answer (a 4xx for one payload, a redirect) says the endpoint is up:
 * that delivery retries on its own schedule and holds nothing, so one payload a receiver rejects cannot block the
 * rest. A 2xx or such an answer clears the hold; the user's own sends (a test, a redelivery) skip it, which is how
 * they check that a fixed endpoint answers again.
 */

/** Whether an attempt's outcome says the endpoint itself is failing (null: no answer). */
export function isEndpointFailure(statusCode: number | null): boolean {
  return statusCode === null || statusCode >= 500 || statusCode === 408 || statusCode === 429;
}

/** SQL: the delivery row `d`'s last attempt failed at the endpoint (see isEndpointFailure). */
export const failedAtEndpoint = (d: SQL): SQL =>
  sql`(${d}.attempts > 0 AND (${d}.last_status_code IS NULL OR ${d}.last_status_code >= 500 OR ${d}.last_status_code IN (408, 429)))`;

/** Being sent now: a consumer holds its lease. */
const beingSent = (d: SQL, now: number) => sql`(${d}.lease_until IS NOT NULL AND ${d}.lease_until >= ${now})`;
/** A sweep put its message on the queue and no consumer has taken it yet (the claim clears the mark). */
const queued = (d: SQL, now: number) => sql`(${d}.enqueued_until IS NOT NULL AND ${d}.enqueued_until > ${now})`;

/** SQL: the webhook `w` (a row alias) is not held by a failure backoff at `now`. */
export const notHeld = (w: SQL, now: number): SQL => sql`(${w}.held_until IS NULL OR ${w}.held_until <= ${now})`;

/**
 * Webhook ids with a pending row being sent or queued (the sweep takes nothing more of them, so the queue holds at
 * most one sweep message per endpoint). `only`: just that endpoint (through the webhook_id + status index), for the
 * look right after a send to it settled.
 */
export const busyEndpoints = (now: number, only?: string): SQL => sql`
  SELECT h.webhook_id FROM webhook_deliveries h
  WHERE h.status = 'pending' AND (${beingSent(sql`h`, now)} OR ${queued(sql`h`, now)})
    ${only === undefined ? sql`` : sql`AND h.webhook_id = ${only}`}`;

/**
 * For a claim of delivery `id`: no other row of its endpoint is being sent, and (unless `manual`: the user's own
 * test or redelivery) the endpoint is not held. A queued row does not stop a claim: it is not in flight yet.
 */
export const endpointFreeFor = (id: string, webhookId: SQL, now: number, manual: boolean): SQL => sql`
  NOT EXISTS (SELECT 1 FROM webhook_deliveries o
    WHERE o.webhook_id = ${webhookId} AND o.status = 'pending' AND o.id <> ${id} AND ${beingSent(sql`o`, now)})
  ${manual ? sql`` : sql`AND NOT EXISTS (SELECT 1 FROM webhooks hw WHERE hw.id = ${webhookId} AND NOT ${notHeld(sql`hw`, now)})`}`;

/** SQL: a row the user sent by hand (a test event, or a redelivery: only those have series_started_at). */
export const sentByHand = (d: SQL): SQL => sql`(${d}.event = ${WEBHOOK_TEST_EVENT} OR ${d}.series_started_at IS NOT NULL)`;
