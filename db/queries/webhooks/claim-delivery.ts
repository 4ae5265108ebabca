import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries, webhooks } from "../../schema";

export interface ClaimedDelivery {
  id: string;
  event: string;
  jobId: string | null;
  occurredAt: number;
  /** This attempt's number (1-based within the current retry series): the ownership of the recordDeliveryAttempt CAS. */
  attempts: number;
  payload: string | null;
  url: string;
  secret: string;
  userId: string;
}

/**
 * Takes a due pending delivery for one send: counts the attempt and leases the row for `leaseMs`, so a second queue
 * message for it (the sweep and a retry message may both carry it) finds it taken and is dropped. A consumer that
 * dies mid-send leaves the lease to run out; the sweep then enqueues the row again. Null: not due, held, or done.
 */
export async function claimDelivery(db: Db, id: string, now: number, leaseMs: number): Promise<ClaimedDelivery | null> {
  const rows = await db.all<ClaimedDelivery>(sql`
    UPDATE ${webhookDeliveries} SET attempts = attempts + 1, lease_until = ${now + leaseMs}, last_attempt_at = ${now}
    WHERE id = ${id} AND status = 'pending' AND next_attempt_at <= ${now} AND (lease_until IS NULL OR lease_until < ${now})
    RETURNING id, event, job_id AS jobId, occurred_at AS occurredAt, attempts, payload,
      (SELECT w.url FROM ${webhooks} w WHERE w.id = webhook_id) AS url,
      (SELECT w.secret FROM ${webhooks} w WHERE w.id = webhook_id) AS secret,
      (SELECT w.user_id FROM ${webhooks} w WHERE w.id = webhook_id) AS userId`);
  return rows[0] ?? null;
}
