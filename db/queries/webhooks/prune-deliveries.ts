import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/**
 * Delivered or failed deliveries whose delivery series began before `before` leave the log (pending ones stay until
 * they settle). The series, not the creation: a redelivery sent yesterday of an older event stays as long as one
 * created yesterday. It is also what webhook_deliveries_window_idx ranges on: filtered on created_at, every tick's
 * last batch read every settled row of the week under the write lock.
 */
export async function pruneDeliveries(db: Db, before: number, limit = 1000): Promise<number> {
  const done = await db.run(sql`
    DELETE FROM ${webhookDeliveries} WHERE id IN (
      SELECT id FROM ${webhookDeliveries}
      WHERE status IN ('delivered', 'failed') AND coalesce(series_started_at, created_at) < ${before} LIMIT ${limit})`);
  return done.rowsAffected;
}
