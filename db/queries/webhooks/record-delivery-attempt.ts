import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import type { DeliveryStatus } from "../../schema";
import { webhookDeliveries, webhooks } from "../../schema";
import { makeWaitingRowsDue } from "./endpoint-hold";

export type AttemptOutcome =
  | { kind: "delivered"; statusCode: number }
  | { kind: "retry"; statusCode: number | null; error: string; nextAttemptAt: number }
  | { kind: "failed"; statusCode: number | null; error: string };

/**
 * What the attempt said about the endpoint itself (endpoint-hold.ts): it answered, or it is failing — `failures` in
 * a row now, held until `heldUntil`.
 */
export type EndpointVerdict = { answered: true } | { answered: false; failures: number; heldUntil: number };

/**
 * Records how the claimed attempt went, compare-and-set on (id, pending, the claim's attempt and time): a row
 * redelivered or re-claimed meanwhile is not overwritten. Keeps the first attempt's payload for every later one.
 * Returns the status written, or null when the CAS did not apply.
 *
 * In the same batch, the endpoint's state (endpoint-hold.ts), whether or not the row's CAS applied — the endpoint
 * did answer (or not) either way: an answer clears its hold and failure count and makes its deliveries that were
 * waiting out an endpoint failure due now; a failure counts and holds it until `heldUntil`.
 */
export async function recordDeliveryAttempt(
  db: Db,
  input: {
    id: string;
    webhookId: string;
    /** The URL the attempt went to: the endpoint verdict is about it, not about a URL the webhook was changed to since. */
    url: string;
    attempt: number;
    /** The claim's `claimedAt`: with `attempt`, which claim this is (a redelivery restarts the attempt count). */
    claimedAt: number;
    payload: string;
    outcome: AttemptOutcome;
    endpoint: EndpointVerdict;
  },
  now: number,
): Promise<DeliveryStatus | null> {
  const o = input.outcome;
  const status: DeliveryStatus = o.kind === "delivered" ? "delivered" : o.kind === "failed" ? "failed" : "pending";
  const record = db.all<{ status: DeliveryStatus }>(sql`
    UPDATE ${webhookDeliveries} SET
      status = ${status},
      lease_until = NULL,
      last_status_code = ${o.statusCode},
      last_error = ${o.kind === "delivered" ? null : o.error.slice(0, 500)},
      delivered_at = ${o.kind === "delivered" ? now : null},
      next_attempt_at = ${o.kind === "retry" ? o.nextAttemptAt : now},
      payload = coalesce(payload, ${input.payload})
    WHERE id = ${input.id} AND status = 'pending' AND attempts = ${input.attempt} AND last_attempt_at = ${input.claimedAt}
    RETURNING status`);
  const e = input.endpoint;
  const [rows] = e.answered
    ? await db.batch([
        record,
        db.run(sql`UPDATE ${webhooks} SET failures = 0, held_until = NULL WHERE id = ${input.webhookId} AND url = ${input.url}`),
        db.run(makeWaitingRowsDue(input.webhookId, now)),
      ])
    : await db.batch([
        record,
        db.run(sql`
          UPDATE ${webhooks} SET failures = ${e.failures}, held_until = max(coalesce(held_until, 0), ${e.heldUntil})
          WHERE id = ${input.webhookId} AND url = ${input.url}`),
      ]);
  return rows[0]?.status ?? null;
}
