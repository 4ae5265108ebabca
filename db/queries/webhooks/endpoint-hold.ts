import { sql, type SQL } from "drizzle-orm";

/**
 * Per endpoint, not per delivery: one send at a time, and after a failed attempt the whole endpoint waits out that
 * attempt's backoff. Per-delivery retries alone let an endpoint that is down take one attempt per pending row (each
 * up to the 15-s send timeout), so a backlog of events — ten webhooks and a pause/resume loop make one fast — kept
 * the shared consumers busy with sends that could not succeed while other users' events queued behind them. Now a
 * down endpoint costs one attempt per backoff period whatever its backlog, and the backlog goes out, one row after
 * another, once an attempt succeeds.
 *
 * SQL fragments over a `webhook_deliveries` row aliased `d` (all of them: pending rows only mean anything here).
 */

/** Being sent now: a consumer holds its lease. */
const beingSent = (d: SQL, now: number) => sql`(${d}.lease_until IS NOT NULL AND ${d}.lease_until >= ${now})`;
/** A sweep put its message on the queue and no consumer has taken it yet. */
const queued = (d: SQL, now: number) => sql`(${d}.enqueued_until IS NOT NULL AND ${d}.enqueued_until > ${now})`;
/** Its last attempt failed and its retry is not due yet: the endpoint is failing, and waits until then. */
const backingOff = (d: SQL, now: number) => sql`(${d}.attempts > 0 AND ${d}.next_attempt_at > ${now})`;

/**
 * Webhook ids whose endpoint is held: a pending row is being sent, queued, or backing off. The sweep takes nothing
 * more of these, so the queue never holds more than one message per endpoint from sweeps.
 */
export const heldEndpoints = (now: number): SQL => sql`
  SELECT h.webhook_id FROM webhook_deliveries h
  WHERE h.status = 'pending' AND (${beingSent(sql`h`, now)} OR ${queued(sql`h`, now)} OR ${backingOff(sql`h`, now)})`;

/**
 * For a claim of delivery `id`: no other row of its endpoint is being sent, and (unless the send is one the user
 * asked for — a test event or a redelivery, which is how they check that a fixed endpoint answers again) none is
 * backing off. A queued row does not stop a claim: it is not in flight yet.
 */
export const endpointFreeFor = (id: string, webhookId: SQL, now: number, manual: boolean): SQL => sql`
  NOT EXISTS (SELECT 1 FROM webhook_deliveries o
    WHERE o.webhook_id = ${webhookId} AND o.status = 'pending' AND o.id <> ${id}
      AND (${beingSent(sql`o`, now)}${manual ? sql`` : sql` OR ${backingOff(sql`o`, now)}`}))`;
