import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/** A delivery is attempted for this long from its event (or from a redelivery); then it fails. */
export const DELIVERY_WINDOW_MS = 24 * 3_600_000;

export const EXPIRED_ERROR = "not delivered within 24 hours: the endpoint kept failing";

/**
 * Fails pending deliveries whose 24-hour window is over and that no consumer is sending. Rows behind an endpoint
 * that kept failing (endpoint-hold.ts) may never have had an attempt of their own; without this they would wait for
 * ever, and the outbox would grow with every event for as long as the endpoint stays down.
 */
export async function expireDeliveries(db: Db, now: number, limit = 1000): Promise<number> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE ${webhookDeliveries} SET status = 'failed', lease_until = NULL, enqueued_until = NULL,
      last_error = coalesce(last_error || '; ', '') || ${EXPIRED_ERROR}
    WHERE id IN (
      SELECT id FROM ${webhookDeliveries}
      WHERE status = 'pending' AND coalesce(series_started_at, created_at) <= ${now - DELIVERY_WINDOW_MS}
        AND (lease_until IS NULL OR lease_until < ${now})
      LIMIT ${limit})
    RETURNING id`);
  return rows.length;
}
