import { sql, type SQL } from "drizzle-orm";
import type { Db } from "../../client";
import { ACTIVE_JOB_STATUS_LIST, JOB_ACCEPTS_WORK, MAX_ATTEMPTS, ROW_JOB_CANCELS_WORK } from "../states";

/** What a runner needs to start work, returned by the claim itself (no second read). */
export interface ClaimedVariation {
  id: string;
  jobId: string;
  sourceId: string;
  position: number;
  seed: number;
  /**
   * This claim's number (`claims` after it, 1-based, never reused for this variation): part of the ownership and of
   * the output key. Not the cap counter `attempts`, which hand-backs refund and reopens reset.
   */
  attempt: number;
  leaseExpiresAt: number;
  sourceKey: string;
  sourcePosition: number;
  sourceName: string;
  /** Already recorded by an earlier probe of the same source (any runner), or null. */
  sourceDurationMs: number | null;
  jobThumbnailKey: string | null;
  /**
   * The job's effects as stored (JobEffects JSON; read with parseStoredEffects from db/effects.ts). Part of the claim
   * so every runner derives a variation's parameters from the same seed + effects, with no second read.
   */
  jobEffects: string;
}

function claimable(now: number, alias: SQL) {
  // The IN lets SQLite probe variations_job_idx (job_id, status) for just these two statuses instead of walking
  // every variation of the job (the OR alone cannot use the index's second column).
  return sql`(${alias}.status IN ('queued', 'running') AND (${alias}.status = 'queued' OR (${alias}.lease_expires_at < ${now}
    AND ${alias}.attempts < ${MAX_ATTEMPTS})))`;
}

/**
 * Expired leases that must not be handed out again: the attempt cap was reached (→ failed), or the job cancels
 * work (→ cancelled). Runs before every claim so runners recover without waiting for the edge cron. A paused job's
 * expired lease under the cap is left to recoverExpiredLeases (→ queued): it must wait for the resume.
 */
export function reapStatement(db: Db, now: number, extra: SQL = sql`1`) {
  return db.all<{ id: string; jobId: string; status: string }>(sql`
    UPDATE variations SET
      status = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN 'cancelled' ELSE 'failed' END,
      error = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN error
        ELSE 'runner lost ' || attempts || ' times (lease expired); giving up' END,
      finished_at = ${now},
      lease_expires_at = NULL
    WHERE status = 'running' AND lease_expires_at < ${now} AND ${extra}
      AND (attempts >= ${MAX_ATTEMPTS} OR ${ROW_JOB_CANCELS_WORK})
    RETURNING id, job_id AS jobId, status`);
}

/**
 * The job the next claim serves. Users take turns: the job's owner with the fewest running variations goes first,
 * then the oldest job. So a user's 1-variation job is picked as soon as a runner frees up, however many variations
 * another user queued before it.
 *
 * Cost: it reads only jobs that accept work (jobs_status_idx), per such job a probe of variations_job_idx
 * (job_id, status), and the running variations once (as many as the runners have slots) for every owner's count —
 * the number of finished jobs and of queued variations does not enter, so it stays flat as the history grows.
 * Measured in-process on 1 user × 20 jobs × 100 variations: ~0.3–0.4 ms per claim statement; the Hrana round trip
 * around it costs an order of magnitude more (docs/performance.md).
 */
function nextJobId(now: number) {
  // Running variations per owner, counted once per claim (not once per candidate job): only running rows are read
  // (variations_claim_idx), as many as the runners have slots, whatever the queue and the history hold.
  const runningByUser = sql`(SELECT u.user_id AS user_id, count(*) AS n FROM variations r JOIN jobs u ON u.id = r.job_id
      WHERE r.status = 'running' AND u.status IN (${ACTIVE_JOB_STATUS_LIST}) GROUP BY u.user_id)`;
  return sql`(SELECT j.id FROM jobs j LEFT JOIN ${runningByUser} busy ON busy.user_id = j.user_id
    WHERE ${JOB_ACCEPTS_WORK}
      AND EXISTS (SELECT 1 FROM variations c WHERE c.job_id = j.id AND ${claimable(now, sql`c`)})
    ORDER BY coalesce(busy.n, 0), j.created_at, j.rowid
    LIMIT 1)`;
}

/** queued → running for one variation (attempt + 1), or nothing when no work is claimable. */
export function claimStatement(db: Db, input: { runnerId: string; leaseMs: number; now: number }) {
  const { runnerId, leaseMs, now } = input;
  // Single statement: the subqueries pick the fairest job and its first claimable row, and the outer WHERE
  // re-checks the same predicate, so two runners racing for it cannot both win (SQLite runs one write statement
  // at a time). In one claim batch each statement sees the previous claims, so the turns alternate within it too.
  return db.all<ClaimedVariation>(sql`
    UPDATE variations SET
      status = 'running',
      runner_id = ${runnerId},
      lease_expires_at = ${now + leaseMs},
      attempts = attempts + 1,
      -- max(): a runner of the previous release (which only counted attempts) may have claimed after the
      -- migration; the next number must still be one no claim has used.
      claims = max(claims, attempts) + 1,
      started_at = ${now},
      finished_at = NULL,
      progress = 0,
      stop_stage = NULL,
      params = NULL,
      error = NULL
    WHERE id = (
        SELECT v.id FROM variations v
        WHERE v.job_id = ${nextJobId(now)} AND ${claimable(now, sql`v`)}
        ORDER BY v.created_at, v.rowid
        LIMIT 1)
      AND ${claimable(now, sql`variations`)}
      AND job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_ACCEPTS_WORK})
    RETURNING id, job_id AS jobId, source_id AS sourceId, position, seed, claims AS attempt,
      lease_expires_at AS leaseExpiresAt,
      (SELECT s.object_key FROM sources s WHERE s.id = source_id) AS sourceKey,
      (SELECT s.position FROM sources s WHERE s.id = source_id) AS sourcePosition,
      (SELECT s.name FROM sources s WHERE s.id = source_id) AS sourceName,
      (SELECT s.duration_ms FROM sources s WHERE s.id = source_id) AS sourceDurationMs,
      (SELECT j.thumbnail_key FROM jobs j WHERE j.id = job_id) AS jobThumbnailKey,
      (SELECT j.effects FROM jobs j WHERE j.id = job_id) AS jobEffects`);
}

/** queued → processing for jobs that just got their first claim. */
export function jobsToProcessingStatement(db: Db, now: number) {
  // Every claim runs this, so the only queued jobs with a running variation are the ones just claimed.
  return db.run(sql`
    UPDATE jobs SET status = 'processing', started_at = coalesce(started_at, ${now}), updated_at = ${now}
    WHERE status = 'queued'
      AND EXISTS (SELECT 1 FROM variations v WHERE v.job_id = jobs.id AND v.status = 'running')`);
}
