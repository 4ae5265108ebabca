// Webhook sweep cost against the rows waiting behind endpoints (part of `npm run bench`). Figures, not asserts.
import { sql } from "drizzle-orm";
import { createDb, type Db } from "../db/client";
import { newId } from "../db/ids";
import { migrateDb } from "../db/migrate";
import { takeDueDeliveries } from "../db/queries/webhooks";
import type { BenchStack } from "./system";

/** Webhooks of other users with nothing pending, present in every figure. */
export const IDLE_WEBHOOKS = 10_000;

export interface SweepFigures {
  backlog: number;
  /** Median ms of one sweep (takeDueDeliveries, limit 100) with no backlog, then with `backlog` rows behind a held endpoint. */
  emptyMs: number;
  heldMs: number;
  /** Median ms of the look for an open endpoint's next row (a send settled) with `backlog` rows waiting on it. */
  nextRowMs: number;
  /** Median ms of one sweep with the backlog on an endpoint that is up, every row waiting out its own backoff (4xx). */
  backoffMs: number;
  /** The other user's due event was taken by every sweep with the backlog. */
  otherTaken: boolean;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timedRuns(n: number, work: (i: number) => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await work(i);
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/**
 * Seeds, in a database of its own on the stack's libSQL server: IDLE_WEBHOOKS webhooks with nothing to send, user A's
 * endpoint held after failures with `backlog` pending job events (half of them tried), and user B's endpoint with
 * one due event. Each sweep runs a minute after
 * the last (past the queued mark), so every one does the whole look again.
 */
export async function benchWebhookSweep(b: BenchStack, backlog = 100_000): Promise<SweepFigures> {
  const url = `${b.stack.libsqlUrl}/webhooks${newId()}/`;
  await migrateDb(url, b.stack.libsqlAuthToken);
  const db: Db = createDb(url, { authToken: b.stack.libsqlAuthToken, timeoutMs: 120_000 });
  const now = Date.now();
  const minute = (i: number) => now + (i + 1) * 61_000;
  await db.run(sql`INSERT INTO users (id, email, password_hash, role, created_at) VALUES ('ua', 'a@bench', 'x', 'user', 0), ('ub', 'b@bench', 'x', 'user', 0)`);
  await db.run(sql`INSERT INTO webhooks (id, user_id, url, secret, events, created_at, failures, held_until)
    VALUES ('wa', 'ua', 'https://a.example/hook', 'whsec_x', '[]', 0, 8, ${now + 24 * 3_600_000}), ('wb', 'ub', 'https://b.example/hook', 'whsec_y', '[]', 0, 0, NULL)`);
  // Other users' webhooks with nothing to send: a sweep should not pay for them.
  await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${IDLE_WEBHOOKS / 10})
    INSERT INTO users (id, email, password_hash, role, created_at) SELECT 'idle' || i, 'idle' || i || '@bench', 'x', 'user', 0 FROM n`);
  await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${IDLE_WEBHOOKS - 1})
    INSERT INTO webhooks (id, user_id, url, secret, events, created_at) SELECT 'idle-w' || i, 'idle' || (i / 10 + 1), 'https://idle.example/' || i, 'whsec_z', '[]', 0 FROM n`);
  const emptyMs = await timedRuns(5, (i) => takeDueDeliveries(db, minute(i), 100));
  await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${backlog})
    INSERT INTO webhook_deliveries (id, webhook_id, job_id, event, occurred_at, status, attempts, next_attempt_at, created_at, last_attempt_at, last_status_code)
    SELECT 'a' || i, 'wa', 'j' || i, 'job.paused', ${now} - i, 'pending', i % 2, ${now} - i, ${now} - i,
      CASE WHEN i % 2 = 1 THEN ${now} - i END, CASE WHEN i % 2 = 1 THEN 503 END FROM n`);
  let otherTaken = true;
  const heldMs = await timedRuns(5, async (i) => {
    await db.run(sql`INSERT INTO webhook_deliveries (id, webhook_id, job_id, event, occurred_at, status, attempts, next_attempt_at, created_at)
      VALUES (${`b${i}`}, 'wb', ${`jb${i}`}, 'job.completed', ${now}, 'pending', 0, ${now}, ${now})`);
    const taken = await takeDueDeliveries(db, minute(i + 5), 100);
    otherTaken &&= taken.includes(`b${i}`);
    await db.run(sql`UPDATE webhook_deliveries SET status = 'delivered', enqueued_until = NULL WHERE id = ${`b${i}`}`);
  });
  // The same backlog on an endpoint that answers again: the look right after each send for its next row.
  await db.run(sql`UPDATE webhooks SET failures = 0, held_until = NULL WHERE id = 'wa'`);
  const nextRowMs = await timedRuns(5, async (i) => {
    const [id] = await takeDueDeliveries(db, minute(i + 10), 1, { webhookId: "wa" });
    if (id) await db.run(sql`UPDATE webhook_deliveries SET status = 'delivered', enqueued_until = NULL WHERE id = ${id}`);
  });
  // The same backlog answered 4xx, every row waiting out its own backoff: nothing is due, the sweep should see so at once.
  await db.run(sql`UPDATE webhook_deliveries SET attempts = 3, last_attempt_at = ${now}, last_status_code = 400, next_attempt_at = ${now + 24 * 3_600_000}
    WHERE webhook_id = 'wa' AND status = 'pending'`);
  const backoffMs = await timedRuns(5, (i) => takeDueDeliveries(db, minute(i + 15), 100));
  db.$client.close();
  return { backlog, emptyMs, heldMs, nextRowMs, backoffMs, otherTaken };
}
