import { sql, type SQL } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../client";
import type { JobStatus } from "../schema";
import { finalizeJobStatement } from "./finalize";
import { runnerBeatStatement, type RunnerBeat } from "./runners";

/** A variation whose lease expired this many times is failed instead of being handed out again. */
export const MAX_ATTEMPTS = 3;

export type StopStage = "q" | "sigterm" | "sigkill";

/** What a runner needs to start work, returned by the claim itself (no second read). */
export interface ClaimedVariation {
  id: string;
  jobId: string;
  sourceId: string;
  position: number;
  seed: number;
  attempts: number;
  leaseExpiresAt: number;
  sourceKey: string;
  sourcePosition: number;
  sourceName: string;
  /** Already recorded by an earlier probe of the same source (any runner), or null. */
  sourceDurationMs: number | null;
  jobThumbnailKey: string | null;
}

/** db.batch for a list whose length is only known at run time (one round trip, one transaction). */
async function batchOf(db: Db, items: readonly BatchItem<"sqlite">[]): Promise<unknown[]> {
  return (await db.batch(items as unknown as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]])) as unknown as unknown[];
}

// A job accepts new claims only while nobody asked to cancel it and it is not finished.
const JOB_ACCEPTS_WORK = sql`(j.cancel_requested_at IS NULL AND j.status IN ('queued', 'processing'))`;
const JOB_REFUSES_WORK = sql`(j.cancel_requested_at IS NOT NULL OR j.status NOT IN ('queued', 'processing'))`;

function claimable(now: number, alias: SQL) {
  return sql`(${alias}.status = 'queued' OR (${alias}.status = 'running' AND ${alias}.lease_expires_at < ${now}
    AND ${alias}.attempts < ${MAX_ATTEMPTS}))`;
}

/**
 * Expired leases that must not be handed out again: the attempt cap was reached (→ failed), or the job no longer
 * accepts work (→ cancelled). Runs before every claim so runners recover without waiting for the edge cron.
 */
function reapStatement(db: Db, now: number, extra: SQL = sql`1`) {
  return db.all<{ id: string; jobId: string; status: string }>(sql`
    UPDATE variations SET
      status = CASE WHEN job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_REFUSES_WORK}) THEN 'cancelled' ELSE 'failed' END,
      error = CASE WHEN job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_REFUSES_WORK}) THEN error
        ELSE 'runner lost ' || attempts || ' times (lease expired); giving up' END,
      finished_at = ${now},
      lease_expires_at = NULL
    WHERE status = 'running' AND lease_expires_at < ${now} AND ${extra}
      AND (attempts >= ${MAX_ATTEMPTS} OR job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_REFUSES_WORK}))
    RETURNING id, job_id AS jobId, status`);
}

function claimStatement(db: Db, input: { runnerId: string; leaseMs: number; now: number }) {
  const { runnerId, leaseMs, now } = input;
  // Single statement: the subquery picks the oldest claimable row and the outer WHERE re-checks the same
  // predicate, so two runners racing for it cannot both win (SQLite runs one write statement at a time).
  return db.all<ClaimedVariation>(sql`
    UPDATE variations SET
      status = 'running',
      runner_id = ${runnerId},
      lease_expires_at = ${now + leaseMs},
      attempts = attempts + 1,
      started_at = ${now},
      finished_at = NULL,
      progress = 0,
      stop_stage = NULL,
      error = NULL
    WHERE id = (
        SELECT v.id FROM variations v JOIN jobs j ON j.id = v.job_id
        WHERE ${claimable(now, sql`v`)} AND ${JOB_ACCEPTS_WORK}
        ORDER BY v.created_at, v.rowid
        LIMIT 1)
      AND ${claimable(now, sql`variations`)}
      AND job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_ACCEPTS_WORK})
    RETURNING id, job_id AS jobId, source_id AS sourceId, position, seed, attempts,
      lease_expires_at AS leaseExpiresAt,
      (SELECT s.object_key FROM sources s WHERE s.id = source_id) AS sourceKey,
      (SELECT s.position FROM sources s WHERE s.id = source_id) AS sourcePosition,
      (SELECT s.name FROM sources s WHERE s.id = source_id) AS sourceName,
      (SELECT s.duration_ms FROM sources s WHERE s.id = source_id) AS sourceDurationMs,
      (SELECT j.thumbnail_key FROM jobs j WHERE j.id = job_id) AS jobThumbnailKey`);
}

function jobsToProcessingStatement(db: Db, now: number) {
  // Every claim runs this, so the only queued jobs with a running variation are the ones just claimed.
  return db.run(sql`
    UPDATE jobs SET status = 'processing', started_at = coalesce(started_at, ${now}), updated_at = ${now}
    WHERE status = 'queued'
      AND EXISTS (SELECT 1 FROM variations v WHERE v.job_id = jobs.id AND v.status = 'running')`);
}

export interface ClaimInput {
  runnerId: string;
  leaseMs: number;
  now: number;
  /** Claim up to this many variations in the same round trip (free slots). Default 1. */
  limit?: number;
  /** Registry beat folded into the same round trip. */
  beat?: RunnerBeat;
}

export interface ClaimResult {
  claimed: ClaimedVariation[];
  /** Variations failed (attempt cap) or cancelled (job refuses work) because their lease expired. */
  reaped: { id: string; jobId: string; status: string }[];
}

export interface HeartbeatInput {
  runnerId: string;
  now: number;
  leaseMs: number;
  /** The variations this runner is actually working on, with new progress (0..100) when there is any. */
  variations: { id: string; progress?: number | null }[];
  beat?: RunnerBeat;
}

export interface HeartbeatResult {
  /** Variations whose lease was extended: still running and owned by this runner. Any other is lost. */
  owned: string[];
  /** This runner's jobs that were asked to cancel (or are no longer accepting work). */
  cancelJobIds: string[];
}

export interface RoundTripInput {
  runnerId: string;
  now: number;
  leaseMs: number;
  /** Heartbeat for the variations in hand (omit when idle). */
  variations?: { id: string; progress?: number | null }[];
  /** How many variations to claim (0 = none). */
  claim?: number;
  beat?: RunnerBeat;
}

export interface RoundTripResult {
  heartbeat: HeartbeatResult | null;
  claim: ClaimResult | null;
}

/**
 * Everything a runner tells and asks the database each tick, in ONE HTTP round trip (one batch, one
 * transaction): extend leases and write progress for exactly the listed variations (never for rows the runner
 * does not hold in memory, e.g. after a restart with a fixed RUNNER_ID); which of its jobs were asked to cancel;
 * reap expired leases that must not be retried; claim up to `claim` variations (oldest first, queued or
 * lease-expired, never of a job whose cancel was requested) and move their jobs queued → processing; refresh the
 * registry row. Jobs touched by the reap are finalized afterwards (rare: an extra round trip per such job).
 */
export async function runnerRoundTrip(db: Db, input: RoundTripInput): Promise<RoundTripResult> {
  const { runnerId, now, leaseMs } = input;
  const items: BatchItem<"sqlite">[] = [];
  const hb = input.variations && input.variations.length > 0 ? input.variations : null;
  if (hb) {
    const progress: Record<string, number | null> = {};
    for (const v of hb) progress[v.id] = v.progress ?? null;
    const json = JSON.stringify(progress);
    items.push(
      db.all<{ id: string }>(sql`
        UPDATE variations SET
          lease_expires_at = ${now + leaseMs},
          progress = coalesce((SELECT p.value FROM json_each(${json}) p WHERE p.key = variations.id), progress)
        WHERE runner_id = ${runnerId} AND status = 'running'
          AND id IN (SELECT p.key FROM json_each(${json}) p)
        RETURNING id`),
      db.all<{ jobId: string }>(sql`
        SELECT DISTINCT v.job_id AS jobId FROM variations v JOIN jobs j ON j.id = v.job_id
        WHERE v.runner_id = ${runnerId} AND v.status = 'running' AND ${JOB_REFUSES_WORK}`),
    );
  }
  const limit = Math.max(0, input.claim ?? 0);
  if (limit > 0) {
    items.push(reapStatement(db, now));
    for (let i = 0; i < limit; i++) items.push(claimStatement(db, { runnerId, leaseMs, now }));
    items.push(jobsToProcessingStatement(db, now));
  }
  if (input.beat) items.push(runnerBeatStatement(db, input.beat, now));
  if (items.length === 0) return { heartbeat: null, claim: null };

  const results = await batchOf(db, items);
  let i = 0;
  let heartbeat: HeartbeatResult | null = null;
  if (hb) {
    heartbeat = {
      owned: (results[i++] as { id: string }[]).map((r) => r.id),
      cancelJobIds: (results[i++] as { jobId: string }[]).map((r) => r.jobId),
    };
  }
  let claim: ClaimResult | null = null;
  if (limit > 0) {
    const reaped = results[i++] as ClaimResult["reaped"];
    const claimed = (results.slice(i, i + limit) as ClaimedVariation[][]).flat();
    claim = { claimed, reaped };
    for (const jobId of new Set(reaped.map((r) => r.jobId))) {
      await finalizeJobStatement(db, sql`jobs.id = ${jobId}`, now);
    }
  }
  return { heartbeat, claim };
}

/** Claims up to `limit` variations in one round trip (see {@link runnerRoundTrip}). */
export async function claimVariations(db: Db, input: ClaimInput): Promise<ClaimResult> {
  const { claim } = await runnerRoundTrip(db, { ...input, claim: Math.max(1, input.limit ?? 1) });
  return claim!;
}

/** Claims the oldest claimable variation for this runner, or returns null when there is none. */
export async function claimVariation(
  db: Db,
  input: { runnerId: string; leaseMs: number; now: number },
): Promise<ClaimedVariation | null> {
  const { claimed } = await claimVariations(db, { ...input, limit: 1 });
  return claimed[0] ?? null;
}

/**
 * The busy runner's per-second round trip: extends leases and writes progress for the listed variations and
 * answers which of its jobs have a cancel request (see {@link runnerRoundTrip}).
 */
export async function heartbeatVariations(db: Db, input: HeartbeatInput): Promise<HeartbeatResult> {
  const { heartbeat } = await runnerRoundTrip(db, input);
  return heartbeat ?? { owned: [], cancelJobIds: [] };
}

// A settle statement and the job's finalize go in one batch: whoever settles the last variation finalizes the
// job, and since a batch is one transaction, two runners settling the last two variations cannot both miss it.
async function settle(db: Db, update: SQL, variationId: string, now: number): Promise<boolean> {
  const [rows] = await db.batch([
    db.all<{ id: string }>(update),
    finalizeJobStatement(db, sql`jobs.id = (SELECT job_id FROM variations WHERE id = ${variationId})`, now),
  ]);
  return rows.length > 0;
}

const OWNED = (variationId: string, runnerId: string) =>
  sql`id = ${variationId} AND runner_id = ${runnerId} AND status = 'running'`;

/**
 * Records a finished output (CAS: still running and owned by this runner) and finalizes the job if it was the
 * last active variation. Returns false when the lease was lost: the caller must delete the object it uploaded.
 */
export async function finishVariation(
  db: Db,
  input: { variationId: string; runnerId: string; outputKey: string; outputSize: number; now: number },
): Promise<boolean> {
  const { variationId, runnerId, outputKey, outputSize, now } = input;
  return settle(
    db,
    sql`UPDATE variations SET status = 'completed', progress = 100, finished_at = ${now}, lease_expires_at = NULL,
      output_key = ${outputKey}, output_size = ${outputSize}, error = NULL
      WHERE ${OWNED(variationId, runnerId)} RETURNING id`,
    variationId,
    now,
  );
}

/** Fails a variation this runner owns (CAS) with a readable reason; finalizes the job if it was the last one. */
export async function failVariation(
  db: Db,
  input: { variationId: string; runnerId: string; error: string; now: number },
): Promise<boolean> {
  const { variationId, runnerId, error, now } = input;
  return settle(
    db,
    sql`UPDATE variations SET status = 'failed', finished_at = ${now}, lease_expires_at = NULL, error = ${error}
      WHERE ${OWNED(variationId, runnerId)} RETURNING id`,
    variationId,
    now,
  );
}

/**
 * Marks a variation cancelled after its FFmpeg was stopped (CAS: still running and owned by this runner), with
 * the last stop stage that was needed; finalizes the job if it was the last active variation.
 */
export async function cancelVariation(
  db: Db,
  input: { variationId: string; runnerId: string; stopStage: StopStage | null; now: number },
): Promise<boolean> {
  const { variationId, runnerId, stopStage, now } = input;
  return settle(
    db,
    sql`UPDATE variations SET status = 'cancelled', finished_at = ${now}, lease_expires_at = NULL,
      stop_stage = ${stopStage}
      WHERE ${OWNED(variationId, runnerId)} RETURNING id`,
    variationId,
    now,
  );
}

/**
 * Graceful shutdown: hands a variation back to the queue without counting the attempt (CAS: running and owned).
 * If its job was asked to cancel meanwhile, it is cancelled instead: a queued variation of a cancelling job would
 * never be claimed and the job would never finish.
 */
export async function releaseVariation(
  db: Db,
  input: { variationId: string; runnerId: string; now: number; stopStage?: StopStage | null },
): Promise<boolean> {
  const { variationId, runnerId, now } = input;
  const refuses = sql`job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_REFUSES_WORK})`;
  return settle(
    db,
    sql`UPDATE variations SET
        status = CASE WHEN ${refuses} THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN ${refuses} THEN attempts ELSE max(attempts - 1, 0) END,
        finished_at = CASE WHEN ${refuses} THEN ${now} ELSE NULL END,
        stop_stage = CASE WHEN ${refuses} THEN ${input.stopStage ?? null} ELSE NULL END,
        runner_id = CASE WHEN ${refuses} THEN runner_id ELSE NULL END,
        started_at = CASE WHEN ${refuses} THEN started_at ELSE NULL END,
        lease_expires_at = NULL,
        progress = CASE WHEN ${refuses} THEN progress ELSE 0 END
      WHERE ${OWNED(variationId, runnerId)} RETURNING id`,
    variationId,
    now,
  );
}

/**
 * A transient failure (network, edge unavailable): back to the queue with the attempt counted, or failed with
 * the error once the attempt cap is reached. Returns the new status, or null when the CAS did not apply.
 */
export async function requeueVariation(
  db: Db,
  input: { variationId: string; runnerId: string; error: string; now: number },
): Promise<"queued" | "failed" | "cancelled" | null> {
  const { variationId, runnerId, error, now } = input;
  const refuses = sql`job_id IN (SELECT j.id FROM jobs j WHERE ${JOB_REFUSES_WORK})`;
  const [rows] = await db.batch([
    db.all<{ status: "queued" | "failed" | "cancelled" }>(sql`UPDATE variations SET
        status = CASE WHEN ${refuses} THEN 'cancelled' WHEN attempts >= ${MAX_ATTEMPTS} THEN 'failed' ELSE 'queued' END,
        error = CASE WHEN ${refuses} THEN error WHEN attempts >= ${MAX_ATTEMPTS} THEN ${error} ELSE error END,
        finished_at = CASE WHEN ${refuses} OR attempts >= ${MAX_ATTEMPTS} THEN ${now} ELSE NULL END,
        runner_id = CASE WHEN ${refuses} OR attempts >= ${MAX_ATTEMPTS} THEN runner_id ELSE NULL END,
        lease_expires_at = NULL,
        progress = 0
      WHERE ${OWNED(variationId, runnerId)} RETURNING status`),
    finalizeJobStatement(db, sql`jobs.id = (SELECT job_id FROM variations WHERE id = ${variationId})`, now),
  ]);
  return rows[0]?.status ?? null;
}

/**
 * A source that is not decodable video: fails every queued or running variation of it at once (whoever runs
 * them notices the lost lease on its next heartbeat), records the reason on the source and finalizes the job.
 * Returns how many variations were failed.
 */
export async function failSourceVariations(
  db: Db,
  input: { sourceId: string; error: string; now: number },
): Promise<number> {
  const { sourceId, error, now } = input;
  const [rows] = await db.batch([
    db.all<{ id: string }>(sql`
      UPDATE variations SET status = 'failed', finished_at = ${now}, lease_expires_at = NULL, error = ${error}
      WHERE source_id = ${sourceId} AND status IN ('queued', 'running') RETURNING id`),
    db.run(sql`UPDATE sources SET error = ${error} WHERE id = ${sourceId}`),
    finalizeJobStatement(db, sql`jobs.id = (SELECT job_id FROM sources WHERE id = ${sourceId})`, now),
  ]);
  return rows.length;
}

/**
 * For the edge cron: running variations whose lease expired and that no runner took over. Attempt cap reached →
 * failed "runner lost 3 times"; job asked to cancel → cancelled; otherwise back to queued (the attempt stays
 * counted). Returns the ids of the affected jobs (distinct), which the caller should finalize.
 */
export async function recoverExpiredLeases(db: Db, now: number): Promise<string[]> {
  const [reaped, requeued] = await db.batch([
    reapStatement(db, now),
    db.all<{ jobId: string }>(sql`
      UPDATE variations SET status = 'queued', runner_id = NULL, lease_expires_at = NULL, progress = 0
      WHERE status = 'running' AND lease_expires_at < ${now}
      RETURNING job_id AS jobId`),
  ]);
  return [...new Set([...reaped.map((r) => r.jobId), ...requeued.map((r) => r.jobId)])];
}

/**
 * At runner start: variations still registered to this runner id belong to a previous life of it (a restart
 * with a fixed RUNNER_ID) and nothing is running them. They are treated like expired leases right away
 * (requeued, or failed at the attempt cap), instead of waiting for LEASE_MS. Returns the affected job ids.
 */
export async function recoverRunnerVariations(db: Db, runnerId: string, now: number): Promise<string[]> {
  const mine = sql`runner_id = ${runnerId}`;
  const expire = await db.run(
    sql`UPDATE variations SET lease_expires_at = ${now - 1} WHERE ${mine} AND status = 'running'`,
  );
  if (expire.rowsAffected === 0) return [];
  const [reaped, requeued] = await db.batch([
    reapStatement(db, now, mine),
    db.all<{ jobId: string }>(sql`
      UPDATE variations SET status = 'queued', runner_id = NULL, lease_expires_at = NULL, progress = 0
      WHERE ${mine} AND status = 'running' AND lease_expires_at < ${now}
      RETURNING job_id AS jobId`),
  ]);
  const jobIds = [...new Set([...reaped.map((r) => r.jobId), ...requeued.map((r) => r.jobId)])];
  for (const jobId of jobIds) await finalizeJobStatement(db, sql`jobs.id = ${jobId}`, now);
  return jobIds;
}

/** Records the effect parameters actually applied (CAS: running and owned by this runner). */
export async function recordVariationParams(
  db: Db,
  input: { variationId: string; runnerId: string; params: Record<string, unknown> },
): Promise<boolean> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE variations SET params = ${JSON.stringify(input.params)}
    WHERE ${OWNED(input.variationId, input.runnerId)} RETURNING id`);
  return rows.length > 0;
}

/** The job's status and the output keys the database records for it (orphan sweep), or null if the job is gone. */
export async function getJobOutputs(
  db: Db,
  jobId: string,
): Promise<{ status: JobStatus; outputKeys: string[] } | null> {
  const rows = await db.all<{ status: JobStatus; outputKey: string | null }>(sql`
    SELECT j.status AS status, v.output_key AS outputKey
    FROM jobs j LEFT JOIN variations v ON v.job_id = j.id AND v.output_key IS NOT NULL
    WHERE j.id = ${jobId}`);
  if (rows.length === 0) return null;
  return { status: rows[0]!.status, outputKeys: rows.flatMap((r) => (r.outputKey ? [r.outputKey] : [])) };
}
