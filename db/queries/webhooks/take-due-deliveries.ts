import { sql, type SQL } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries, webhooks } from "../../schema";
import { endpointBusy, notHeld, pickOrder, skipsHold } from "./endpoint-hold";
import { accountDisabled } from "../states";
import { withinWindow } from "./expire-deliveries";

/** How long a row a sweep queued is left out of later sweeps: far more than a queue takes to hand a message over. */
export const ENQUEUE_HOLD_MS = 60_000;

/** SQL: pending row `d` may be sent now, its endpoint aside: due, not leased, not queued, inside its window. */
const dueNow = (d: SQL, now: number): SQL => sql`${d}.status = 'pending' AND ${d}.next_attempt_at <= ${now}
  AND (${d}.lease_until IS NULL OR ${d}.lease_until < ${now}) AND (${d}.enqueued_until IS NULL OR ${d}.enqueued_until <= ${now})
  AND ${withinWindow(d, now)}`;

/**
 * Takes due pending deliveries for the queue and marks them queued for ENQUEUE_HOLD_MS (one statement, so two
 * sweeps at once take different rows). At most one per endpoint, and none of an endpoint that is held after a
 * failure (unless the row skips holds) or has a row being sent or queued (endpoint-hold.ts); of an endpoint's due
 * rows, `pickOrder` decides. Round-robin over users — every user's first endpoint, then every user's second, … —
 * so neither one endpoint's backlog nor one user's ten endpoints fill a sweep ahead of another user's event.
 * `webhookId`: only that endpoint (its next row, right after a send to it settled). `userId`: only that user's
 * endpoints (the kick after one user's job request: its cost is that user's endpoints, not everyone's). A queued message that is lost
 * costs ENQUEUE_HOLD_MS: the row (and so its endpoint) is taken again after it.
 *
 * Driven by the endpoints that have pending rows, each answered from indexes: its untried hand-sent row, else (not
 * held) the first due row in pick order, then whether it is busy. So a sweep's cost grows with the endpoints that
 * have something to send, not with the rows waiting behind them nor with idle webhooks: a user whose endpoints are
 * down with a large backlog (a pause/resume loop makes one fast) no longer makes every sweep — and every send's look
 * for its endpoint's next row — read and sort all of it.
 */
export async function takeDueDeliveries(db: Db, now: number, limit: number, only?: { webhookId: string } | { userId: string }): Promise<string[]> {
  // Each lookup names its index (INDEXED BY): without statistics SQLite prefers another index, and would read a held
  // endpoint's whole backlog looking for its few hand-sent rows.
  const firstOf = (index: string, where: SQL) => sql`(SELECT d.id FROM ${webhookDeliveries} d INDEXED BY ${sql.raw(index)}
    WHERE d.webhook_id = w.id AND ${where} AND ${dueNow(sql`d`, now)} ORDER BY ${pickOrder(sql`d`)} LIMIT 1)`;
  // Whether the endpoint has a due row at all, from its rows in due order (those due but leased, queued or past their
  // window are few): without it, an endpoint whose every row waits out its own backoff would be walked in pick order
  // to the end on every sweep.
  const hasDueRow = sql`EXISTS (SELECT 1 FROM ${webhookDeliveries} d INDEXED BY webhook_deliveries_pending_due_idx
    WHERE d.webhook_id = w.id AND ${dueNow(sql`d`, now)})`;
  // The endpoints with pending rows, one index seek each (a skip scan over the pending index): a sweep costs nothing
  // for the many webhooks with nothing to send.
  const nextEndpoint = (after: SQL | null) => sql`(SELECT min(x.webhook_id) FROM ${webhookDeliveries} x INDEXED BY webhook_deliveries_pending_idx
    WHERE x.status = 'pending' ${after === null ? sql`` : sql`AND x.webhook_id > ${after}`})`;
  const rows = await db.all<Taken>(sql`
    WITH RECURSIVE endpoints(id) AS (
      ${
        only === undefined
          ? sql`SELECT ${nextEndpoint(null)} UNION ALL SELECT ${nextEndpoint(sql`e.id`)} FROM endpoints e WHERE e.id IS NOT NULL`
          : "webhookId" in only
            ? sql`SELECT ${only.webhookId}`
            : sql`SELECT uw.id FROM ${webhooks} uw WHERE uw.user_id = ${only.userId}`
      }
    )
    UPDATE ${webhookDeliveries} SET enqueued_until = ${now + ENQUEUE_HOLD_MS}
    WHERE id IN (
      SELECT id FROM (
        SELECT c.id, c.next_attempt_at, row_number() OVER (PARTITION BY p.user_id ORDER BY c.next_attempt_at, c.id) AS turn
        FROM (
          SELECT w.id AS webhook_id, w.user_id,
            coalesce(${firstOf("webhook_deliveries_hand_sent_idx", skipsHold(sql`d`))},
              CASE WHEN ${notHeld(sql`w`, now)} AND ${hasDueRow} THEN ${firstOf("webhook_deliveries_pending_idx", sql`d.status = 'pending'`)} END) AS id
          FROM endpoints e JOIN ${webhooks} w ON w.id = e.id
          -- A disabled account's rows wait (its window still runs): re-enabled within it, they go out.
          WHERE NOT ${accountDisabled(sql`w.user_id`)}
        ) p JOIN ${webhookDeliveries} c ON c.id = p.id
        WHERE NOT ${endpointBusy(sql`p.webhook_id`, now)}
      )
      ORDER BY turn, next_attempt_at LIMIT ${limit})
    RETURNING id, next_attempt_at AS nextAttemptAt, (SELECT w.user_id FROM webhooks w WHERE w.id = webhook_id) AS userId`);
  return roundRobin(rows).map((r) => r.id);
}

type Taken = { id: string; userId: string; nextAttemptAt: number };

/** RETURNING gives no order: the round-robin order again, for the queue (its first batches go out first). */
function roundRobin(rows: Taken[]): Taken[] {
  const byAge = [...rows].sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Map<string, number>();
  const turns = byAge.map((r) => {
    const turn = (seen.get(r.userId) ?? 0) + 1;
    seen.set(r.userId, turn);
    return { r, turn };
  });
  return turns.sort((a, b) => a.turn - b.turn || a.r.nextAttemptAt - b.r.nextAttemptAt).map((t) => t.r);
}

/** Whether anyone has a webhook at all (the cron skips the between-minute sweeps when nobody does). */
export async function hasWebhooks(db: Db): Promise<boolean> {
  const rows = await db.all<{ one: number }>(sql`SELECT 1 AS one FROM webhooks LIMIT 1`);
  return rows.length > 0;
}
