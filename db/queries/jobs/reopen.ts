import { and, eq, inArray, sql, type SQL } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError, UnprocessableError, type AppError } from "../../errors";
import type { QuotaRequest, UserLimits } from "../../limits";
import { jobs, type JobStatus } from "../../schema";
import { explainRefusal } from "../quotas/explain-refusal";
import { fitsQuota } from "../quotas/usage";
import { REOPENED_JOB_STATUS } from "../states";
import { assertNotExpired, loadRecord, ownedBy } from "./load";
import { presentRecord, type JobRecord, type JobView, type Viewer } from "./present";

/**
 * What retry, resume (of a cancelled job) and more variations share: they put work back into a finished job. The
 * shape of each is one batch of two compare-and-sets — first the variations, guarded by the job still being in the
 * finished status the caller saw, not expired, and the owner's limits (the same fitsQuota fragments the job
 * admission uses, so reopening cannot bypass USER_ACTIVE_JOBS / USER_QUEUED_VARIATIONS, nor USER_STORAGE_BYTES: a
 * reopen makes outputs, so a user already over their storage quota is refused as a new job would be); then the job, guarded by
 * the same status AND by having queued work. A finished job never holds queued work, so "finished with queued
 * work" means the first statement applied in this very batch: the two cannot come apart.
 */

/**
 * The columns of a variation handed out afresh: attempts reset, the previous attempt's traces cleared. Not
 * `claims`: the next claim's number must differ from every earlier one (a late finisher of the last series keeps
 * its own key and cannot pass the ownership check).
 */
export const FRESH_VARIATION = {
  status: "queued",
  progress: 0,
  attempts: 0,
  runnerId: null,
  leaseExpiresAt: null,
  stopStage: null,
  startedAt: null,
  finishedAt: null,
  params: null,
  error: null,
  outputKey: null,
  outputSize: null,
  outputSha256: null,
  outputCrc32: null,
  ssim: null,
  psnr: null,
  distinct: null,
  redraws: 0,
  redrawReason: null,
  thumbnailKey: null,
  fingerprint: null,
} as const;

/** The job is still `statuses`, not expired, and its owner can take `request` on top of what they hold. */
export function reopenGuard(jobId: string, ownerId: string, statuses: readonly JobStatus[], limits: UserLimits, request: QuotaRequest, now: number): SQL {
  return sql`exists (select 1 from ${jobs} where ${jobs.id} = ${jobId} and ${inArray(jobs.status, [...statuses])}
    and (${jobs.expiresAt} is null or ${jobs.expiresAt} > ${now}) and ${fitsQuota(ownerId, limits, request)})`;
}

/** The job CAS of a reopen: status → queued/processing, finish and cancel traces cleared, the queue wait restarts. */
export function reopenJobStatement(db: Db, jobId: string, viewer: Viewer, where: SQL, now: number, extra: Record<string, unknown> = {}) {
  return db
    .update(jobs)
    .set({
      status: sql`${REOPENED_JOB_STATUS}`,
      // A job that goes back to the queue waits a full JOB_TTL_HOURS again (unused once it has started).
      queuedAt: now,
      error: null,
      completedAt: null,
      expiresAt: null,
      cancelRequestedAt: null,
      cancelledAt: null,
      cancelledBy: null,
      cancelReason: null,
      updatedAt: now,
      ...extra,
    })
    .where(and(eq(jobs.id, jobId), ownedBy(viewer), where))
    .returning({ id: jobs.id });
}

/** A reopen's optional Idempotency-Key, and what the request asks (`resume`, `retry`, `more:<n>`). */
export interface ReopenKey {
  key: string;
  request: string;
}

/** What a reopen answers: the job, and whether that is the answer to an earlier request with the same key. */
export interface Reopened {
  job: JobView;
  replayed: boolean;
}

/**
 * How long a reopen's key answers for its job: every retry after a lost answer is long over by then, and a client
 * that reuses one key for a later request (a nightly resume) gets that request done instead of a replay.
 */
export const REOPEN_KEY_REPLAY_MS = 24 * 3_600_000;

/** What every reopen writes with its job compare-and-set: its key, or none (a later repeat of an older key is new). */
export const reopenKeyColumns = (idem: ReopenKey | null, now: number) => ({
  reopenKey: idem?.key ?? null,
  reopenRequest: idem?.request ?? null,
  reopenedAt: idem ? now : null,
});

/**
 * A repeat of the reopen this job last took, within REOPEN_KEY_REPLAY_MS (its answer was lost, or a twin sent at the
 * same time won): the job as it is now, instead of 409 `job_active` or, for more, a second batch of variations. The
 * key is written by the reopen's own compare-and-set, so a request that failed never holds it. 422
 * `idempotency_key_reused` when the key asked this job for something else. Null: no such earlier request.
 */
function replayOf(record: JobRecord, idem: ReopenKey | null, now: number): Reopened | null {
  const { reopenKey, reopenedAt } = record.job;
  if (!idem || reopenKey !== idem.key || reopenedAt === null || reopenedAt <= now - REOPEN_KEY_REPLAY_MS) return null;
  if (record.job.reopenRequest !== idem.request) {
    throw new UnprocessableError("idempotency_key_reused", `This Idempotency-Key already asked this job for ${record.job.reopenRequest}; use a new key`);
  }
  return { job: presentRecord(record, now), replayed: true };
}

/**
 * A reopen's start: the job as `viewer` may see it (404 otherwise) and this request's key, or the answer to an
 * earlier request with the same key (`replay`, see replayOf).
 */
export async function loadForReopen(
  db: Db,
  input: { jobId: string; viewer: Viewer; idempotencyKey?: string | null },
  request: string,
  now: number,
): Promise<{ record: JobRecord; idem: ReopenKey | null; replay: Reopened | null }> {
  const idem = input.idempotencyKey ? { key: input.idempotencyKey, request } : null;
  const record = await loadRecord(db, input.jobId, input.viewer);
  return { record, idem, replay: replayOf(record, idem, now) };
}

/** SQL: the job (outer `jobs` row) has queued work. */
export const HAS_QUEUED_WORK = sql`exists (select 1 from variations qw where qw.job_id = jobs.id and qw.status = 'queued')`;

/**
 * Throws what a reopen of `record` must answer before anything is tried: 409 `job_active` while the job is active
 * (its body carries the job), 409 `code` when its status is not one of `allowed`, 410 `expired` after expiry.
 */
export function assertReopenable(record: JobRecord, allowed: readonly JobStatus[], code: string, verb: string, now: number): void {
  const { job } = record;
  if (!allowed.includes(job.status)) {
    const active = !["completed", "failed", "cancelled"].includes(job.status);
    throw new ConflictError(
      active ? "job_active" : code,
      active ? `A ${job.status} job cannot ${verb}; wait until it is finished` : `A ${job.status} job cannot ${verb}`,
      { job: presentRecord(record, now) },
    );
  }
  assertNotExpired(job, now);
}

/**
 * After a reopen whose compare-and-set did not apply, read again: a twin with the same key won (its answer, see
 * {@link replayOf}); else throws why — the job changed meanwhile (404, 409, 410 as {@link assertReopenable}) or the
 * owner's limits refused it.
 */
export async function afterRefusedReopen(
  db: Db,
  input: {
    jobId: string;
    viewer: Viewer;
    allowed: readonly JobStatus[];
    code: string;
    verb: string;
    limits: UserLimits;
    request: QuotaRequest;
    idem: ReopenKey | null;
  },
  now: number,
): Promise<Reopened> {
  const record = await loadRecord(db, input.jobId, input.viewer);
  const replay = replayOf(record, input.idem, now);
  if (replay) return replay;
  assertReopenable(record, input.allowed, input.code, input.verb, now);
  throw (await explainRefusal(db, record.job.userId, input.limits, input.request)) satisfies AppError;
}
