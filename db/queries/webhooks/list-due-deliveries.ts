import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/** Pending deliveries that are due and that no consumer holds, oldest due first (the sweep enqueues them). */
export async function listDueDeliveries(db: Db, now: number, limit: number): Promise<string[]> {
  const rows = await db.all<{ id: string }>(sql`
    SELECT id FROM ${webhookDeliveries}
    WHERE status = 'pending' AND next_attempt_at <= ${now} AND (lease_until IS NULL OR lease_until < ${now})
    ORDER BY next_attempt_at LIMIT ${limit}`);
  return rows.map((r) => r.id);
}

/** Whether anyone has a webhook at all (the cron skips the between-minute sweeps when nobody does). */
export async function hasWebhooks(db: Db): Promise<boolean> {
  const rows = await db.all<{ one: number }>(sql`SELECT 1 AS one FROM webhooks LIMIT 1`);
  return rows.length > 0;
}
