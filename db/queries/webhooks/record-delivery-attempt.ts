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
 */
export async function recordDeliveryAttempt(
  db: Db,
  input: { id: string; attempt: number; payload: string; outcome: AttemptOutcome },
  now: number,
): Promise<DeliveryStatus | null> {
  const o = input.outcome;
  const status: DeliveryStatus = o.kind === "delivered" ? "delivered" : o.kind === "failed" ? "failed" : "pending";
  const rows = await db.all<{ status: DeliveryStatus }>(sql`
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
  return rows[0]?.status ?? null;
}
