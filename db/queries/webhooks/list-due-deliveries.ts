import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/**
 * Pending deliveries that are due and that no consumer holds (the sweep enqueues them): round-robin over webhooks —
 * the oldest due one of every webhook, then the second of every webhook, … — so one endpoint's backlog (a receiver
 * that is down) never fills a sweep ahead of another user's event.
 */
export async function listDueDeliveries(db: Db, now: number, limit: number): Promise<string[]> {
  const rows = await db.all<{ id: string }>(sql`
    SELECT id FROM (
      SELECT id, next_attempt_at,
        row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS turn
      FROM ${webhookDeliveries}
      WHERE status = 'pending' AND next_attempt_at <= ${now} AND (lease_until IS NULL OR lease_until < ${now})
    )
    ORDER BY turn, next_attempt_at LIMIT ${limit}`);
  return rows.map((r) => r.id);
}

/** Whether anyone has a webhook at all (the cron skips the between-minute sweeps when nobody does). */
export async function hasWebhooks(db: Db): Promise<boolean> {
  const rows = await db.all<{ one: number }>(sql`SELECT 1 AS one FROM webhooks LIMIT 1`);
  return rows.length > 0;
}
