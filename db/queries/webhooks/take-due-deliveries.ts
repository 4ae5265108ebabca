import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/** How long a row a sweep queued is left out of later sweeps: far more than a queue takes to hand a message over. */
export const ENQUEUE_HOLD_MS = 60_000;

/**
 * Takes pending deliveries that are due, that no consumer holds and that no sweep queued within ENQUEUE_HOLD_MS, for
 * the sweep to queue, and marks them queued (one statement, so two sweeps at once take different rows). Round-robin
 * over webhooks — the oldest due one of every webhook, then the second of every webhook, … — so one endpoint's
 * backlog (a receiver that is down) never fills a sweep ahead of another user's event. A queued message that is
 * lost costs ENQUEUE_HOLD_MS: the row is taken again after it.
 */
export async function takeDueDeliveries(db: Db, now: number, limit: number): Promise<string[]> {
  const rows = await db.all<Taken>(sql`
    UPDATE ${webhookDeliveries} SET enqueued_until = ${now + ENQUEUE_HOLD_MS}
    WHERE id IN (
      SELECT id FROM (
        SELECT id, next_attempt_at,
          row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS turn
        FROM ${webhookDeliveries}
        WHERE status = 'pending' AND next_attempt_at <= ${now} AND (lease_until IS NULL OR lease_until < ${now})
          AND (enqueued_until IS NULL OR enqueued_until <= ${now})
      )
      ORDER BY turn, next_attempt_at LIMIT ${limit})
    RETURNING id, webhook_id AS webhookId, next_attempt_at AS nextAttemptAt`);
  return roundRobin(rows).map((r) => r.id);
}

type Taken = { id: string; webhookId: string; nextAttemptAt: number };

/** RETURNING gives no order: the round-robin order again, for the queue (its first batches go out first). */
function roundRobin(rows: Taken[]): Taken[] {
  const byAge = [...rows].sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Map<string, number>();
  const turns = byAge.map((r) => {
    const turn = (seen.get(r.webhookId) ?? 0) + 1;
    seen.set(r.webhookId, turn);
    return { r, turn };
  });
  return turns.sort((a, b) => a.turn - b.turn || a.r.nextAttemptAt - b.r.nextAttemptAt).map((t) => t.r);
}

/** Whether anyone has a webhook at all (the cron skips the between-minute sweeps when nobody does). */
export async function hasWebhooks(db: Db): Promise<boolean> {
  const rows = await db.all<{ one: number }>(sql`SELECT 1 AS one FROM webhooks LIMIT 1`);
  return rows.length > 0;
}
