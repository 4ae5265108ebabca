import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import type { DeliveryStatus } from "../../schema";
import { webhookDeliveries } from "../../schema";

export type AttemptOutcome =
  | { kind: "delivered"; statusCode: number }
  | { kind: "retry"; statusCode: number | null; error: string; nextAttemptAt: number }
  | { kind: "failed"; statusCode: number | null; error: string };

/**
 * Records how the claimed attempt went, compare-and-set on (id, pending, attempts = the claim's attempt): a row
 * redelivered or re-claimed meanwhile is not overwritten. Keeps the first attempt's payload for every later one.
 * Returns the status written, or null when the CAS did not apply.
 *
 * A 2xx also frees the endpoint (endpoint-hold.ts): its other rows backing off after failed attempts are due now —
 * it answers again, so they need not wait out backoffs of up to an hour. Whether or not this row's CAS applied: the
 * endpoint answered 2xx either way.
 */
export async function recordDeliveryAttempt(
  db: Db,
  input: { id: string; webhookId: string; attempt: number; payload: string; outcome: AttemptOutcome },
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
    WHERE id = ${input.id} AND status = 'pending' AND attempts = ${input.attempt}
    RETURNING status`);
  if (o.kind !== "delivered") return (await record)[0]?.status ?? null;
  const [rows] = await db.batch([
    record,
    db.run(sql`
      UPDATE ${webhookDeliveries} SET next_attempt_at = ${now}
      WHERE webhook_id = ${input.webhookId} AND status = 'pending' AND attempts > 0 AND next_attempt_at > ${now}`),
  ]);
  return rows[0]?.status ?? null;
}
