import { sql, type SQL } from "drizzle-orm";
import type { Db } from "../client";
import type { JobStatus } from "../schema";
import { ACTIVE_JOB_STATUS_LIST } from "./states";

// The job's terminal status, decided from its variations in the same statement that writes it (so no runner or
// edge request can act on a stale count). Order matters: every variation completed wins over a cancel request.
const ALL_COMPLETED = sql`NOT EXISTS (SELECT 1 FROM variations v WHERE v.job_id = jobs.id AND v.status <> 'completed')`;
const NONE_COMPLETED = sql`NOT EXISTS (SELECT 1 FROM variations v WHERE v.job_id = jobs.id AND v.status = 'completed')`;
const FIRST_ERROR = sql`(SELECT v.error FROM variations v WHERE v.job_id = jobs.id AND v.error IS NOT NULL
  ORDER BY v.finished_at, v.position LIMIT 1)`;

/**
 * The single compare-and-set UPDATE behind {@link finalizeJob}, as a batchable statement. `jobFilter` selects the
 * job(s) (`jobs.id = …`); the CAS only applies to active jobs with no queued or running variation left. A paused
 * job is active: it is finalized only once nothing of it is queued or running (its last running variations
 * completed or failed before their runners saw the pause); while its stopped work waits in the queue, never.
 */
export function finalizeJobStatement(db: Db, jobFilter: SQL, now: number) {
  return db.all<{ id: string; status: JobStatus }>(sql`
    UPDATE jobs SET
      status = CASE
        WHEN ${ALL_COMPLETED} THEN 'completed'
        WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
        WHEN ${NONE_COMPLETED} THEN 'failed'
        ELSE 'completed' END,
      cancelled_at = CASE
        WHEN ${ALL_COMPLETED} THEN cancelled_at
        WHEN cancel_requested_at IS NOT NULL THEN ${now}
        ELSE cancelled_at END,
      error = CASE
        WHEN ${ALL_COMPLETED} OR cancel_requested_at IS NOT NULL OR NOT (${NONE_COMPLETED}) THEN error
        ELSE coalesce(error, 'All ' || total_variations || ' variations failed'
          || coalesce(': ' || ${FIRST_ERROR}, '')) END,
      completed_at = ${now},
      expires_at = ${now} + retention_ms,
      updated_at = ${now}
    WHERE ${jobFilter}
      AND status IN (${ACTIVE_JOB_STATUS_LIST})
      AND NOT EXISTS (SELECT 1 FROM variations v WHERE v.job_id = jobs.id AND v.status IN ('queued', 'running'))
    RETURNING id, status`);
}

/**
 * Moves a job to its terminal status once no variation is queued or running: all completed → completed (even if a
 * cancel was requested: completed wins); else cancel requested → cancelled; else none completed → failed (with a
 * readable error); else completed with the failed variations counted. Sets completed_at and expires_at.
 * Returns the new status, or null when the compare-and-set did not apply (job still active or already final).
 */
export async function finalizeJob(db: Db, jobId: string, now: number): Promise<JobStatus | null> {
  const rows = await finalizeJobStatement(db, sql`jobs.id = ${jobId}`, now);
  return rows[0]?.status ?? null;
}

/**
 * {@link finalizeJobStatement} for several jobs in one statement: a runner's tick or the cron that touched K jobs
 * paid K round trips one after another, and on a slow database those held the tick (heartbeat and cancel watch
 * with it) long enough for the runner's own leases to run out. The ids of those that ended.
 */
export async function finalizeJobs(db: Db, jobIds: Iterable<string>, now: number): Promise<string[]> {
  const ids = [...new Set(jobIds)];
  if (ids.length === 0) return [];
  const rows = await finalizeJobStatement(db, sql`jobs.id IN (SELECT value FROM json_each(${JSON.stringify(ids)}))`, now);
  return rows.map((r) => r.id);
}
