import { sql, type SQL } from "drizzle-orm";

/**
 * The state machine's constants and the SQL fragments every query shares, named once (pg-boss keeps its states
 * in one constant the same way). The table of arrows (status × the function that moves it) is in docs/runner.md.
 */

/** A variation handed out this many times without an outcome is failed instead of being handed out again. */
export const MAX_ATTEMPTS = 3;

export type StopStage = "q" | "sigterm" | "sigkill";

/**
 * Job statuses in which variations can still be queued or running (and the job can still be finalized). A paused
 * job is active: its queued variations wait for a resume and count against its owner's limits.
 */
export const ACTIVE_JOB_STATUSES = ["queued", "processing", "paused", "cancelling"] as const;
/** {@link ACTIVE_JOB_STATUSES} as an SQL list, for `status IN (…)`. */
export const ACTIVE_JOB_STATUS_LIST = sql.raw(ACTIVE_JOB_STATUSES.map((s) => `'${s}'`).join(", "));

/** The account `userId` (an SQL expression) is disabled: its work is held and its webhooks stay quiet. */
export function accountDisabled(userId: SQL): SQL {
  return sql`EXISTS (SELECT 1 FROM users du WHERE du.id = ${userId} AND du.disabled_at IS NOT NULL)`;
}

/**
 * Job `j`'s owner is disabled (admin action). Such an account's work is held like a paused job's — nothing handed
 * out, running encodes stopped and handed back with the attempt refunded — without touching its jobs' statuses, so
 * re-enabling the account resumes it. A disabled account spent the runners' shared capacity (and its webhooks kept
 * firing) for as long as its queue lasted.
 */
export const JOB_OWNER_DISABLED = accountDisabled(sql`j.user_id`);

/** Job `j` accepts new claims: nobody asked to cancel it, it is not finished, and its owner is not disabled. */
export const JOB_ACCEPTS_WORK = sql`(j.cancel_requested_at IS NULL AND j.status IN ('queued', 'processing') AND NOT ${JOB_OWNER_DISABLED})`;
/**
 * The negation of {@link JOB_ACCEPTS_WORK}: running work of such a job is stopped (the runners' watch); what the
 * stop settles to is decided by {@link JOB_CANCELS_WORK}.
 */
export const JOB_REFUSES_WORK = sql`(j.cancel_requested_at IS NOT NULL OR j.status NOT IN ('queued', 'processing') OR ${JOB_OWNER_DISABLED})`;
/**
 * Job `j` refuses work for good: a cancel was requested, or it is finished. A paused job refuses work too (its
 * runners stop), but only for now: what its runners stop or hand back goes back to the queue, never to cancelled.
 */
export const JOB_CANCELS_WORK = sql`(j.cancel_requested_at IS NOT NULL OR j.status NOT IN ('queued', 'processing', 'paused'))`;
/**
 * For an UPDATE on `variations` (not aliased): the row's job cancels work. Every settle of a stopped or handed-back
 * variation decides between cancelled (this) and queued with the attempt refunded (paused, or resumed meanwhile).
 * Correlated on purpose: `job_id IN (SELECT … WHERE <cancels>)` does not depend on the row, so SQLite built the list
 * of every finished job in history (a scan of jobs) wherever it appeared — six times per settle, under the write lock.
 */
export const ROW_JOB_CANCELS_WORK = sql`EXISTS (SELECT 1 FROM jobs j WHERE j.id = variations.job_id AND ${JOB_CANCELS_WORK})`;

/**
 * For an UPDATE on `jobs`: the status a reopened job (resume, retry failed, more variations) goes back to — queued
 * if no variation of it was ever claimed (so the claim moves it to processing as usual), else processing.
 */
export const REOPENED_JOB_STATUS = sql`CASE WHEN started_at IS NULL THEN 'queued' ELSE 'processing' END`;

/**
 * Ownership of a running variation: the id, the runner AND the attempt — the claim's number (`claims`, which only
 * ever grows). The attempt is what makes a late finisher harmless: after a lease expiry, a hand-back or a reopen
 * the same runner may claim the same variation again, and only the newest claim may move the row (or own the
 * object key `…a<attempt>…`). `attempts`, the cap counter, is refunded and reset, so it cannot be the token.
 */
export const owned = (o: { variationId: string; runnerId: string; attempt: number }) =>
  sql`(id = ${o.variationId} AND runner_id = ${o.runnerId} AND claims = ${o.attempt} AND status = 'running')`;

export interface Ownership {
  variationId: string;
  runnerId: string;
  /** The attempt number the claim returned (`claims` after the claim: unique per variation). */
  attempt: number;
}
