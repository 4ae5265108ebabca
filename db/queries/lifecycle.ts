import { and, eq, inArray, isNotNull, lte, notExists, sql } from "drizzle-orm";
import type { Db } from "../client";
import { jobs, variations, TERMINAL_JOB_STATUSES } from "../schema";
import { accountDisabled } from "./states";

export const EXPIRED_WHILE_QUEUED = "expired while queued";

/**
 * Finished jobs whose retention ended at or before `now`: each user's oldest first, then each user's second, …
 * (oldest expiry first within a round). Taken in plain expiry order, one user who piles up short-lived jobs put
 * every other user's expired jobs behind a backlog of theirs: still stored, still counted in their owners' quota.
 */
export async function listExpiredJobIds(db: Db, now: number, limit: number): Promise<string[]> {
  const rows = await db.all<{ id: string }>(sql`
    SELECT id FROM (
      SELECT ${jobs.id} AS id, ${jobs.expiresAt} AS expires_at,
        row_number() OVER (PARTITION BY ${jobs.userId} ORDER BY ${jobs.expiresAt}) AS turn
      FROM ${jobs}
      WHERE ${and(
        // Unary + keeps SQLite off the status index (nothing runs ANALYZE): through it, every batch read every
        // finished job still retained instead of ranging over the expired ones on jobs_expires_idx.
        inArray(sql`+${jobs.status}`, [...TERMINAL_JOB_STATUSES]),
        isNotNull(jobs.expiresAt),
        lte(jobs.expiresAt, now),
      )}
    )
    ORDER BY turn, expires_at
    LIMIT ${limit}`);
  return rows.map((r) => r.id);
}

export const ACCOUNT_DISABLED_REASON = "the account was disabled";

/**
 * Active jobs of accounts disabled since before `disabledBefore` (DISABLED_WORK_HOLD_MS) → cancelling, with the
 * reason recorded; finalizeIdleJobs then cancels their queued variations and ends them (their runners stopped their
 * encodes when the account was disabled). Without this a never re-enabled account's jobs stayed active for ever,
 * their sources and outputs never expiring nor evictable. Returns the job ids.
 */
export async function cancelJobsOfDisabledAccounts(db: Db, disabledBefore: number, now: number, limit = 500): Promise<string[]> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE jobs SET status = 'cancelling', cancel_requested_at = coalesce(cancel_requested_at, ${now}),
      cancel_reason = coalesce(cancel_reason, ${ACCOUNT_DISABLED_REASON}), updated_at = ${now}
    WHERE id IN (
      SELECT j.id FROM jobs j JOIN users u ON u.id = j.user_id
      WHERE u.disabled_at IS NOT NULL AND u.disabled_at <= ${disabledBefore} AND j.status IN ('queued', 'processing', 'paused')
      LIMIT ${limit})
    RETURNING id`);
  return rows.map((r) => r.id);
}

/**
 * Jobs waiting in the queue (never claimed) since before `queuedBefore` → failed "expired while queued", with their
 * variations failed in the same atomic batch so no runner can claim one in between. The wait counts from when the
 * job last entered the queue (a retried or resumed job waits afresh), not from its creation. Returns the job ids.
 */
export async function failStaleQueuedJobs(db: Db, queuedBefore: number, now: number): Promise<string[]> {
  const stale = and(
    eq(jobs.status, "queued"),
    lte(sql`coalesce(${jobs.queuedAt}, ${jobs.createdAt})`, queuedBefore),
    // A disabled account's jobs are held, not waiting for a runner: re-enabling restarts their wait.
    sql`NOT ${accountDisabled(sql`jobs.user_id`)}`,
  );
  const [, failed] = await db.batch([
    // The variations first, picked by the very condition the job update tests, in the same transaction: found
    // afterwards by the failure it records, the jobs to reach were every job that ever expired while queued and
    // is still retained, read every minute under the write lock.
    db
      .update(variations)
      .set({ status: "failed", error: EXPIRED_WHILE_QUEUED, finishedAt: now, leaseExpiresAt: null })
      .where(and(eq(variations.status, "queued"), inArray(variations.jobId, db.select({ id: jobs.id }).from(jobs).where(stale)))),
    db
      .update(jobs)
      .set({
        status: "failed",
        error: EXPIRED_WHILE_QUEUED,
        completedAt: now,
        expiresAt: sql`${now} + ${jobs.retentionMs}`,
        updatedAt: now,
      })
      .where(stale)
      .returning({ id: jobs.id }),
  ]);
  return failed.map((r) => r.id);
}

/**
 * Cancelling jobs hold queued variations when cancelJobsOfDisabledAccounts marked a job cancelling without
 * touching its variations (lease recovery cannot: it cancels a cancelling job's expired ones before it requeues);
 * no runner claims those, so they are cancelled here. Returns how many.
 */
export async function cancelQueuedVariationsOfCancellingJobs(db: Db, now: number): Promise<number> {
  const done = await db
    .update(variations)
    .set({ status: "cancelled", finishedAt: now, leaseExpiresAt: null })
    .where(
      and(
        eq(variations.status, "queued"),
        sql`${variations.jobId} in (select ${jobs.id} from ${jobs} where ${jobs.status} = 'cancelling')`,
      ),
    )
    .returning({ id: variations.id });
  return done.length;
}

/** Active jobs (processing, paused or cancelling) with no queued or running variation left: they need finalizeJob. */
export async function listIdleActiveJobIds(db: Db, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: jobs.id })
    .from(jobs)
    .where(
      and(
        inArray(jobs.status, ["processing", "paused", "cancelling"]),
        notExists(
          db
            .select({ one: sql`1` })
            .from(variations)
            .where(and(eq(variations.jobId, jobs.id), inArray(variations.status, ["queued", "running"]))),
        ),
      ),
    )
    .limit(limit);
  return rows.map((r) => r.id);
}
