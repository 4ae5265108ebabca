import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/** Delivered or failed deliveries older than `before` leave the log (pending ones stay until they settle). */
export async function pruneDeliveries(db: Db, before: number, limit = 1000): Promise<number> {
  const rows = await db.all<{ id: string }>(sql`
    DELETE FROM ${webhookDeliveries} WHERE id IN (
      SELECT id FROM ${webhookDeliveries} WHERE status IN ('delivered', 'failed') AND created_at < ${before} LIMIT ${limit})
    RETURNING id`);
  return rows.length;
}
