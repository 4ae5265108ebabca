import { sql, type SQL } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/** A delivery is attempted for this long from its event (or from a redelivery); then it fails. */
export const DELIVERY_WINDOW_MS = 24 * 3_600_000;

export const EXPIRED_ERROR = "not delivered within 24 hours";

/** SQL: the delivery row `d` is inside its 24-hour window at `now` (sweeps and claims take nothing outside it). */
export const withinWindow = (d: SQL, now: number): SQL =>
  sql`coalesce(${d}.series_started_at, ${d}.created_at) > ${now - DELIVERY_WINDOW_MS}`;
/** SQL: the opposite, as a range on the expression webhook_deliveries_window_idx indexes (status, then it). */
const pastWindow = (d: SQL, now: number): SQL => sql`coalesce(${d}.series_started_at, ${d}.created_at) <= ${now - DELIVERY_WINDOW_MS}`;

/**
 * Fails pending deliveries whose 24-hour window is over and that no consumer is sending. Rows behind an endpoint
 * that kept failing (endpoint-hold.ts) may never have had an attempt of their own; without this they would wait for
 * ever, and the outbox would grow with every event for as long as the endpoint stays down.
 */
export async function expireDeliveries(db: Db, now: number, limit = 1000): Promise<number> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE ${webhookDeliveries} SET status = 'failed', lease_until = NULL, enqueued_until = NULL,
      last_error = CASE
        WHEN last_error IS NULL THEN ${EXPIRED_ERROR}
        WHEN last_error LIKE '%' || ${EXPIRED_ERROR} THEN last_error
        ELSE last_error || '; ' || ${EXPIRED_ERROR} END
    WHERE id IN (
      SELECT d.id FROM ${webhookDeliveries} d
      WHERE d.status = 'pending' AND ${pastWindow(sql`d`, now)}
        AND (d.lease_until IS NULL OR d.lease_until < ${now})
      LIMIT ${limit})
    RETURNING id`);
  return rows.length;
}
