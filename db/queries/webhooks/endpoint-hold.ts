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
 * rest. A 2xx or such an answer clears the hold; the user's own sends (a test, a redelivery) skip it once
 * (skipsHold).
 */

/** Whether an attempt's outcome says the endpoint itself is failing (null: no answer). */
export function isEndpointFailure(statusCode: number | null): boolean {
  return statusCode === null || statusCode >= 500 || statusCode === 408 || statusCode === 429;
}

/** SQL: the delivery row `d`'s last attempt failed at the endpoint (see isEndpointFailure). */
// Its terms are those of the partial index webhook_deliveries_endpoint_failed_idx (with status = 'pending').
export const failedAtEndpoint = (d: SQL): SQL =>
  sql`(${d}.attempts > 0 AND (${d}.last_status_code IS NULL OR ${d}.last_status_code >= 500 OR ${d}.last_status_code IN (408, 429)))`;

/**
 * SQL: row `h` carries a lease or a queued mark, possibly run out. Settles, claims and releases clear them, so few
 * rows do; the partial index webhook_deliveries_marked_idx holds just those, so a query that states this term
 * exactly (SQLite matches a partial index's WHERE term by term) and names the index (INDEXED BY: without statistics
 * the planner prefers the wider index and reads the backlog) finds an endpoint's in-flight row without its backlog.
 */
const marked = (h: SQL) => sql`(${h}.lease_until IS NOT NULL OR ${h}.enqueued_until IS NOT NULL)`;
/** Being sent now: a consumer holds its lease. */
const beingSent = (d: SQL, now: number) => sql`(${d}.lease_until IS NOT NULL AND ${d}.lease_until >= ${now})`;
/** A sweep put its message on the queue and no consumer has taken it yet (the claim clears the mark). */
const queued = (d: SQL, now: number) => sql`(${d}.enqueued_until IS NOT NULL AND ${d}.enqueued_until > ${now})`;

/** SQL: the webhook `w` (a row alias) is not held by a failure backoff at `now`. */
export const notHeld = (w: SQL, now: number): SQL => sql`(${w}.held_until IS NULL OR ${w}.held_until <= ${now})`;

/**
 * SQL: the endpoint `webhookId` (an expression) has a pending row being sent or queued: the sweep takes nothing more
 * of it, so the queue holds at most one sweep message per endpoint. Reads the marked rows only (see `marked`).
 */
export const endpointBusy = (webhookId: SQL, now: number): SQL => sql`EXISTS (
  SELECT 1 FROM webhook_deliveries h INDEXED BY webhook_deliveries_marked_idx
  WHERE h.webhook_id = ${webhookId} AND h.status = 'pending' AND ${marked(sql`h`)}
    AND (${beingSent(sql`h`, now)} OR ${queued(sql`h`, now)}))`;

/** SQL: a row the user sent by hand (a test event, or a redelivery: only those have series_started_at). */
// The event name is written into the SQL, not bound: SQLite uses the partial index webhook_deliveries_hand_sent_idx
// only for a term it can see equals the index's.
export const sentByHand = (d: SQL): SQL =>
  sql`(${d}.event = ${sql.raw(`'${WEBHOOK_TEST_EVENT}'`)} OR ${d}.series_started_at IS NOT NULL)`;

/**
 * SQL: row `d` may go to an endpoint that is held — the user's own test or redelivery, pending and not tried yet.
 * That is how they check that a fixed endpoint answers again; once tried it waits like any row. Bounded by
 * MANUAL_SEND_PENDING_LIMIT pending hand-sent rows per webhook; its terms include those of the partial index
 * webhook_deliveries_hand_sent_idx, so a held endpoint's backlog is not read to find them.
 */
export const skipsHold = (d: SQL): SQL => sql`(${d}.status = 'pending' AND ${d}.attempts = 0 AND ${sentByHand(d)})`;

/**
 * SQL ORDER BY: which of an endpoint's due rows goes first — what the user sent by hand and was not tried yet is
 * looked up before the rest (skipsHold); then rows never tried (last_attempt_at is NULL, and SQLite sorts NULL
 * first), oldest first, then the one tried longest ago. Rotating through tried rows means no single delivery — a
 * payload the receiver answers 500 or times out on — is the endpoint's only probe for a day while the rest wait.
 * The index webhook_deliveries_pending_idx walks an endpoint's pending rows in this order, so the pick stops at the first
 * due row instead of sorting the backlog.
 */
export const pickOrder = (d: SQL): SQL => sql`${d}.last_attempt_at, ${d}.next_attempt_at, ${d}.id`;

/**
 * For a claim of delivery `id`: no other row of its endpoint is being sent, and the endpoint is not held unless the
 * row skips holds (skipsHold). A queued row does not stop a claim: it is not in flight yet.
 */
export const endpointFreeFor = (id: string, d: SQL, now: number): SQL => sql`
  NOT EXISTS (SELECT 1 FROM webhook_deliveries o INDEXED BY webhook_deliveries_marked_idx
    WHERE o.webhook_id = ${d}.webhook_id AND o.status = 'pending' AND ${marked(sql`o`)} AND o.id <> ${id} AND ${beingSent(sql`o`, now)})
  AND (${skipsHold(d)} OR NOT EXISTS (SELECT 1 FROM webhooks hw WHERE hw.id = ${d}.webhook_id AND NOT ${notHeld(sql`hw`, now)}))`;

/**
 * Statement: the endpoint's rows waiting out its failure hold become due now — when it answered again, or its URL
 * changed. Through the small index of such rows (webhook_deliveries_endpoint_failed_idx), not the due index over
 * every user's rows. `onlyIf`: a further condition (SQL) for the whole statement.
 */
export const makeWaitingRowsDue = (webhookId: string, now: number, onlyIf: SQL = sql`1`): SQL => sql`
  UPDATE webhook_deliveries INDEXED BY webhook_deliveries_endpoint_failed_idx SET next_attempt_at = ${now}
  WHERE webhook_id = ${webhookId} AND status = 'pending' AND next_attempt_at > ${now}
    AND ${failedAtEndpoint(sql`webhook_deliveries`)} AND ${onlyIf}`;
