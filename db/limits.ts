import { ConflictError, TooManyRequestsError, type AppError } from "./errors";

const KiB = 1024;
const GiB = 1024 ** 3;

/** Videos in one job (form files or uploads). */
export const MAX_VIDEOS_PER_JOB = 10;

/**
 * Variations one job may hold per video, over all its "more variations" rounds (5 rounds of the 20 one request may
 * ask for). Without a bound, cancel + more in a loop grew a job by 200 rows a round, for ever: every cancel and every
 * view of it reads them all, in the shared database's write lock, and every webhook event copies the job.
 */
export const MAX_VARIATIONS_PER_VIDEO_PER_JOB = 100;

/**
 * Per-user limits: the environment variable names and their defaults, written once. The edge validates them
 * (edge/env.ts), checks them when a job or upload is admitted (db/queries/quotas) and the storage cap evicts only
 * from users over `USER_STORAGE_BYTES`.
 */
export const USER_LIMIT_DEFAULTS = {
  /** Sources + unused (uploading or completed) uploads + outputs of one user. */
  USER_STORAGE_BYTES: 10 * GiB,
  /** Jobs queued, processing or cancelling. */
  USER_ACTIVE_JOBS: 5,
  /** Variations waiting for a runner, over all of the user's jobs (one full job is 10 × 20 = 200). */
  USER_QUEUED_VARIATIONS: 400,
  /** Large-file uploads started and not completed yet. */
  USER_OPEN_UPLOADS: 10,
  /**
   * Large-file uploads no job uses yet, open or completed. Bounds the rows one user can pile up (tiny completed
   * uploads are cheap to make, and every admission and the stale-upload rule read them); at least the files of
   * one job (edge/env.ts checks), and the CLI reuses its completed uploads when a submit is run again.
   */
  USER_UNUSED_UPLOADS: 100,
} as const;
export type UserLimitName = keyof typeof USER_LIMIT_DEFAULTS;

/** Largest JSON request body on /api (the largest real one, a bulk cancel of 200 ids, is about 6 KiB). */
export const JSON_BODY_LIMIT_DEFAULT = 64 * KiB;

export interface UserLimits {
  storageBytes: number;
  activeJobs: number;
  queuedVariations: number;
  openUploads: number;
  unusedUploads: number;
}

/** What a user holds, in the units of `UserLimits`. */
export type UserUsage = UserLimits;

export type QuotaName = "storage" | "active_jobs" | "queued_variations" | "open_uploads" | "unused_uploads";

export function userLimitsFrom(config: Record<UserLimitName, number>): UserLimits {
  return {
    storageBytes: config.USER_STORAGE_BYTES,
    activeJobs: config.USER_ACTIVE_JOBS,
    queuedVariations: config.USER_QUEUED_VARIATIONS,
    openUploads: config.USER_OPEN_UPLOADS,
    unusedUploads: config.USER_UNUSED_UPLOADS,
  };
}

/** What an admission adds to the usage: a job (1 active job, its variations, its new bytes) or an upload. */
export interface QuotaRequest {
  storageBytes?: number;
  activeJobs?: number;
  queuedVariations?: number;
  openUploads?: number;
  unusedUploads?: number;
}

const ORDER: [QuotaName, keyof UserLimits][] = [
  ["active_jobs", "activeJobs"],
  ["queued_variations", "queuedVariations"],
  ["open_uploads", "openUploads"],
  ["unused_uploads", "unusedUploads"],
  ["storage", "storageBytes"],
];

export interface QuotaExcess {
  name: QuotaName;
  used: number;
  requested: number;
  limit: number;
}

/**
 * The first limit `usage + request` goes over, or null when it fits every one (a limit is checked only if
 * requested). With `orFirst`, the first limit requested instead of null: an insert refused a moment ago whose
 * usage, read after, fits again (a parallel job finished in between).
 */
export function exceededQuota(usage: UserUsage, limits: UserLimits, request: QuotaRequest, orFirst?: "orFirst"): QuotaExcess | null {
  let first: QuotaExcess | null = null;
  for (const [name, key] of ORDER) {
    const requested = request[key];
    if (requested === undefined) continue;
    const q = { name, used: usage[key], requested, limit: limits[key] };
    if (q.used + requested > q.limit) return q;
    first ??= q;
  }
  return orFirst ? first : null;
}

/**
 * How often a form upload in flight refreshes its ingest row (when bytes arrive): far below the orphan rule's
 * one-hour age limit, which allows for this much lag between the last bytes and the last recorded touch.
 */
export const INGEST_TOUCH_MS = 60 * 1000;
/**
 * How long after its last touch a form upload keeps its room in its owner's storage quota: a request that died
 * without giving it back (a lost reply, a dropped connection, the database down) holds it this long (and up to a
 * cron minute more), not until the orphan rule reaps the row an hour later. What it may have stored stays counted
 * (releaseIdleIngestRooms: those objects are in the bucket). A live upload that stalls longer loses the room ahead
 * of that, never its files: it asks for more, through the quota check, when its bytes resume.
 */
export const INGEST_HOLD_MS = 5 * INGEST_TOUCH_MS;

/**
 * How far ahead of its stored bytes a form upload without a Content-Length holds room (one database write per step;
 * a declared length is held whole from the start), and how often, in bytes, an upload records what it stored: so
 * what it stored is never more than its record plus this.
 */
export const RESERVE_STEP_BYTES = 16 * 1024 * 1024;

/**
 * Requests one user may make per window, over every route behind sign-in (the `USER_REQUESTS` rate-limit binding in
 * wrangler.toml holds the same figures: Cloudflare reads them from there, a test keeps the two equal). About 60 a
 * second: far above a person, the web UI (one list poll a few seconds apart, lazy thumbnails) or the CLI (parts a few
 * at a time), far below a loop that would make the shared database slow for everyone.
 */
export const USER_REQUEST_LIMIT = { requests: 600, periodSeconds: 10 } as const;

/** Seconds a client is told to wait when runners working through its jobs will free the limit. */
export const QUOTA_RETRY_AFTER_SECONDS = 60;

const WHAT: Record<QuotaName, string> = {
  storage: "storage",
  active_jobs: "active jobs",
  queued_variations: "queued variations",
  open_uploads: "open uploads",
  unused_uploads: "unused uploads",
};

/**
 * The answer to an admission over a limit, code `quota_exceeded`: 429 with Retry-After when waiting frees it (active
 * jobs and queued variations are worked off by the runners), 409 otherwise (storage: delete finished jobs or unused
 * uploads, or wait for their expiry; open uploads: complete or let them expire; unused uploads: start a job with them or delete them; a request larger than the limit
 * on its own never fits).
 */
export function quotaError(q: QuotaExcess): AppError {
  const unit = q.name === "storage" ? " bytes" : "";
  const message =
    `Over your ${WHAT[q.name]} limit: ${q.used}${unit} in use + ${q.requested}${unit} requested > ${q.limit}${unit}`;
  const waitHelps = (q.name === "active_jobs" || q.name === "queued_variations") && q.requested <= q.limit;
  if (waitHelps) return new TooManyRequestsError(message, QUOTA_RETRY_AFTER_SECONDS, "quota_exceeded");
  return new ConflictError("quota_exceeded", message);
}

/**
 * How long a disabled account's active jobs are held for a re-enable (its work paused, nothing claimed). After
 * that the cron cancels them, so they end and expire like any finished job instead of holding their sources and
 * outputs for ever; a re-enabled owner can still resume a cancelled job.
 */
export const DISABLED_WORK_HOLD_MS = 7 * 24 * 3600_000;

/**
 * How long a multipart upload the edge opened (a runner's output, a form upload's source) may stay neither completed
 * nor aborted before the lifecycle rule aborts it: far beyond any upload in progress (a runner's lease, one request's
 * body), and far below R2's own expiry of unfinished uploads.
 */
export const MULTIPART_ABANDON_MS = 24 * 60 * 60 * 1000;
