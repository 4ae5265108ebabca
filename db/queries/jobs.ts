import { and, asc, count, desc, eq, inArray, isNotNull, lt, or, sql, type SQL } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError, GoneError, NotFoundError, ValidationError } from "../errors";
import { newId } from "../ids";
import {
  ingests,
  jobs,
  sources,
  uploads,
  variations,
  TERMINAL_JOB_STATUSES,
  type JobStatus,
  type VariationStatus,
} from "../schema";
import { finalizeJob } from "./finalize";
import type { AuthenticatedUser } from "./sessions";

export type JobRow = typeof jobs.$inferSelect;
export type SourceRow = typeof sources.$inferSelect;
export type VariationRow = typeof variations.$inferSelect;
/** Who is asking: ownership decides visibility (another user's job is "not found"); admins see every job. */
export type Viewer = AuthenticatedUser;

// ---------------------------------------------------------------------------------------------------------------
// API shape (the presenters below are the only place rows become the public Job)

export interface VariationView {
  index: number;
  status: VariationStatus;
  progress: number;
  params: Record<string, unknown> | null;
  outputId: string | null;
  outputSize: number | null;
  error: string | null;
}
export type FileStatus = "queued" | "processing" | "completed" | "failed" | "cancelled";
export interface FileView {
  id: string;
  name: string;
  size: number;
  status: FileStatus;
  progress: number;
  completedVariations: number;
  error: string | null;
  variations?: VariationView[];
}
export interface JobView {
  id: string;
  status: JobStatus;
  previousStatus?: JobStatus;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  cancelledAt: string | null;
  cancelReason: string | null;
  cancelledBy: string | null;
  expiresAt: string | null;
  variationsPerVideo: number;
  totalVariations: number;
  completedVariations: number;
  failedVariations: number;
  cancelledVariations: number;
  progress: number;
  error: string | null;
  downloadUrl: string | null;
  thumbnailUrl: string | null;
  files: FileView[];
}

const TERMINAL = new Set<JobStatus>(TERMINAL_JOB_STATUSES);
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const round1 = (n: number): number => Math.round(n * 10) / 10;

/** Per source and status: how many variations and the sum of their progress. */
interface StatusCount {
  sourceId: string;
  status: VariationStatus;
  n: number;
  progressSum: number;
}

function countsOf(rows: VariationRow[]): StatusCount[] {
  const map = new Map<string, StatusCount>();
  for (const v of rows) {
    const key = `${v.sourceId}\n${v.status}`;
    const c = map.get(key) ?? { sourceId: v.sourceId, status: v.status, n: 0, progressSum: 0 };
    c.n += 1;
    c.progressSum += v.progress;
    map.set(key, c);
  }
  return [...map.values()];
}

interface Tally {
  total: number;
  queued: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** Completed and failed variations count as 100; queued/running by their own progress; cancelled as 0. */
  progressPoints: number;
}

function tally(counts: StatusCount[]): Tally {
  const t: Tally = { total: 0, queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0, progressPoints: 0 };
  for (const c of counts) {
    t.total += c.n;
    t[c.status] += c.n;
    if (c.status === "completed" || c.status === "failed") t.progressPoints += 100 * c.n;
    else if (c.status === "queued" || c.status === "running") t.progressPoints += c.progressSum;
  }
  return t;
}

function fileStatus(t: Tally): FileStatus {
  if (t.running > 0) return "processing";
  if (t.queued > 0) return t.queued === t.total ? "queued" : "processing";
  if (t.completed > 0) return "completed";
  if (t.cancelled > 0) return "cancelled";
  return "failed";
}

function presentVariation(v: VariationRow): VariationView {
  let params: Record<string, unknown> | null = null;
  if (v.params) {
    try {
      params = JSON.parse(v.params) as Record<string, unknown>;
    } catch {
      params = null;
    }
  }
  const hasOutput = v.status === "completed" && v.outputKey !== null;
  return {
    index: v.position,
    status: v.status,
    progress: round1(v.status === "completed" ? 100 : v.progress),
    params,
    outputId: hasOutput ? v.id : null,
    outputSize: hasOutput ? v.outputSize : null,
    error: v.error,
  };
}

/**
 * Renders a job as the public API shape. `variations` is null for list views (files then carry no variation
 * array); `counts` must describe every variation of the job.
 */
export function presentJob(
  job: JobRow,
  jobSources: SourceRow[],
  counts: StatusCount[],
  jobVariations: VariationRow[] | null,
  now: number,
): JobView {
  const all = tally(counts);
  const files = [...jobSources]
    .sort((a, b) => a.position - b.position)
    .map((s): FileView => {
      const t = tally(counts.filter((c) => c.sourceId === s.id));
      const own = jobVariations?.filter((v) => v.sourceId === s.id).sort((a, b) => a.position - b.position);
      const firstError = t.completed === 0 && t.failed > 0 ? own?.find((v) => v.error)?.error : undefined;
      return {
        id: s.id,
        name: s.name,
        size: s.size,
        status: fileStatus(t),
        progress: t.total ? round1(t.progressPoints / t.total) : 0,
        completedVariations: t.completed,
        error: s.error ?? firstError ?? null,
        ...(own ? { variations: own.map(presentVariation) } : {}),
      };
    });
  const expired = job.expiresAt !== null && job.expiresAt <= now;
  const downloadable = (job.status === "completed" || job.status === "cancelled") && all.completed > 0 && !expired;
  return {
    id: job.id,
    status: job.status,
    createdAt: iso(job.createdAt)!,
    startedAt: iso(job.startedAt),
    completedAt: iso(job.completedAt),
    cancelledAt: iso(job.cancelledAt),
    cancelReason: job.cancelReason,
    cancelledBy: job.cancelledBy,
    expiresAt: iso(job.expiresAt),
    variationsPerVideo: job.variationsPerVideo,
    totalVariations: job.totalVariations,
    completedVariations: all.completed,
    failedVariations: all.failed,
    cancelledVariations: all.cancelled,
    progress: job.status === "completed" ? 100 : all.total ? round1(all.progressPoints / all.total) : 0,
    error: job.error,
    downloadUrl: downloadable ? `/api/jobs/${job.id}/download` : null,
    thumbnailUrl: job.thumbnailKey ? `/api/jobs/${job.id}/thumbnail` : null,
    files,
  };
}

interface JobRecord {
  job: JobRow;
  sources: SourceRow[];
  variations: VariationRow[];
}

function presentRecord(r: JobRecord, now: number, previousStatus?: JobStatus): JobView {
  const view = presentJob(r.job, r.sources, countsOf(r.variations), r.variations, now);
  return previousStatus ? { ...view, previousStatus } : view;
}

/** Ownership as SQL: a plain user only ever touches rows of their own jobs. */
function ownedBy(viewer: Viewer): SQL | undefined {
  return viewer.role === "admin" ? undefined : eq(jobs.userId, viewer.id);
}

async function loadRecord(db: Db, jobId: string, viewer: Viewer): Promise<JobRecord> {
  const [jobRows, sourceRows, variationRows] = await db.batch([
    db.select().from(jobs).where(and(eq(jobs.id, jobId), ownedBy(viewer))),
    db.select().from(sources).where(eq(sources.jobId, jobId)),
    db.select().from(variations).where(eq(variations.jobId, jobId)),
  ]);
  const job = jobRows[0];
  if (!job) throw new NotFoundError("No such job");
  return { job, sources: sourceRows, variations: variationRows };
}

// ---------------------------------------------------------------------------------------------------------------
// Creation

export interface NewSource {
  id: string;
  name: string;
  size: number;
  contentType: string;
  objectKey: string;
}

export interface NewJob {
  id: string;
  userId: string;
  variationsPerVideo: number;
  /** From JOB_TTL_HOURS at creation: a later config change does not move existing jobs' expiry. */
  retentionMs: number;
}

/** Distinct random seeds in [1, 2^31 - 1]; distinct because of the job's unique (job_id, seed) index. */
function distinctSeeds(n: number): number[] {
  const seeds = new Set<number>();
  while (seeds.size < n) {
    for (const x of crypto.getRandomValues(new Uint32Array(n - seeds.size))) {
      const seed = x >>> 1;
      if (seed > 0) seeds.add(seed);
    }
  }
  return [...seeds];
}

function buildRecord(input: NewJob, newSources: NewSource[], now: number): JobRecord {
  const job: JobRow = {
    id: input.id,
    userId: input.userId,
    status: "queued",
    variationsPerVideo: input.variationsPerVideo,
    totalVariations: newSources.length * input.variationsPerVideo,
    error: null,
    thumbnailKey: null,
    createdAt: now,
    startedAt: null,
    completedAt: null,
    cancelRequestedAt: null,
    cancelledAt: null,
    cancelledBy: null,
    cancelReason: null,
    retentionMs: input.retentionMs,
    expiresAt: null,
    updatedAt: now,
  };
  const sourceRows: SourceRow[] = newSources.map((s, i) => ({
    ...s,
    jobId: input.id,
    position: i + 1,
    durationMs: null,
    width: null,
    height: null,
    hasAudio: null,
    error: null,
    createdAt: now,
  }));
  const seeds = distinctSeeds(job.totalVariations);
  const variationRows: VariationRow[] = sourceRows.flatMap((s, si) =>
    Array.from({ length: input.variationsPerVideo }, (_, vi): VariationRow => ({
      id: newId(),
      jobId: input.id,
      sourceId: s.id,
      position: vi + 1,
      seed: seeds[si * input.variationsPerVideo + vi]!,
      params: null,
      status: "queued",
      progress: 0,
      attempts: 0,
      runnerId: null,
      leaseExpiresAt: null,
      stopStage: null,
      // Same timestamp for the whole job; the claim order then falls back to rowid, i.e. insertion order.
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      error: null,
      outputKey: null,
      outputSize: null,
    })),
  );
  return { job, sources: sourceRows, variations: variationRows };
}

/** Creates a queued job whose source objects are already stored: job, sources and variations in one batch. */
export async function createJob(db: Db, input: NewJob & { sources: NewSource[] }, now: number): Promise<JobView> {
  const record = buildRecord(input, input.sources, now);
  await db.batch([
    db.insert(jobs).values(record.job),
    db.insert(sources).values(record.sources),
    db.insert(variations).values(record.variations),
  ]);
  return presentRecord(record, now);
}

/**
 * Creates the job of a form upload whose sources are stored: job, sources and variations in one batch that also
 * deletes the ingest row. The job's owner is read from that row, so when the ingest was abandoned (or reaped) the
 * NOT NULL user_id fails the batch and nothing is created: a commit and an abandonIngest cannot both succeed, and
 * whoever deleted the row knows whether the objects belong to a job.
 */
export async function createJobFromIngest(db: Db, input: NewJob & { sources: NewSource[] }, now: number): Promise<JobView> {
  const record = buildRecord(input, input.sources, now);
  const owner = sql<string>`(select ${ingests.userId} from ${ingests} where ${ingests.id} = ${input.id} and ${ingests.userId} = ${input.userId})`;
  await db.batch([
    db.insert(jobs).values({ ...record.job, userId: owner }),
    db.insert(sources).values(record.sources),
    db.insert(variations).values(record.variations),
    db.delete(ingests).where(eq(ingests.id, input.id)),
  ]);
  return presentRecord(record, now);
}

/**
 * Creates a job from completed large-file uploads. One transaction: the uploads move completed → consumed
 * (CAS, so one upload can feed only one job) and the job rows are inserted, or nothing happens.
 */
export async function createJobFromUploads(
  db: Db,
  input: NewJob & { uploadIds: string[] },
  now: number,
): Promise<JobView> {
  return db.transaction(async (tx) => {
    const rows = await tx
      .select()
      .from(uploads)
      .where(and(inArray(uploads.id, input.uploadIds), eq(uploads.userId, input.userId)));
    const byId = new Map(rows.map((u) => [u.id, u]));
    for (const id of input.uploadIds) {
      const u = byId.get(id);
      if (!u) throw new ValidationError(`uploads: unknown upload ${id}`, "uploads");
      if (u.status === "uploading") throw new ConflictError("upload_incomplete", `Upload ${id} is not complete yet`);
      if (u.status !== "completed") throw new ConflictError("upload_used", `Upload ${id} was already used or aborted`);
    }
    const consumed = await tx
      .update(uploads)
      .set({ status: "consumed" })
      .where(and(inArray(uploads.id, input.uploadIds), eq(uploads.userId, input.userId), eq(uploads.status, "completed")))
      .returning({ id: uploads.id });
    if (consumed.length !== input.uploadIds.length) {
      throw new ConflictError("upload_used", "An upload was used by another job at the same time");
    }
    const record = buildRecord(
      input,
      input.uploadIds.map((id) => {
        const u = byId.get(id)!;
        return {
          id: newId(),
          name: u.filename,
          size: u.size,
          contentType: u.contentType ?? "application/octet-stream",
          objectKey: u.objectKey,
        };
      }),
      now,
    );
    await tx.insert(jobs).values(record.job);
    await tx.insert(sources).values(record.sources);
    await tx.insert(variations).values(record.variations);
    return presentRecord(record, now);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

export async function getJob(db: Db, input: { jobId: string; viewer: Viewer }, now: number): Promise<JobView> {
  return presentRecord(await loadRecord(db, input.jobId, input.viewer), now);
}

export const JOB_PAGE_MAX = 100;

function encodeCursor(job: JobRow): string {
  return btoa(`${job.createdAt}:${job.id}`).replace(/=+$/, "");
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  let text: string;
  try {
    text = atob(cursor);
  } catch {
    throw new ValidationError("cursor: not a cursor returned by this API", "cursor");
  }
  const m = /^(\d{1,16}):([0-9a-z]{1,40})$/.exec(text);
  if (!m) throw new ValidationError("cursor: not a cursor returned by this API", "cursor");
  return { createdAt: Number(m[1]), id: m[2]! };
}

/** Newest first, keyset-paginated on (created_at, id) so pages stay stable while jobs are added. */
export async function listJobs(
  db: Db,
  input: { viewer: Viewer; status?: JobStatus; limit: number; cursor?: string },
  now: number,
): Promise<{ jobs: JobView[]; nextCursor: string | null }> {
  const after = input.cursor ? decodeCursor(input.cursor) : undefined;
  const page = await db
    .select()
    .from(jobs)
    .where(
      and(
        ownedBy(input.viewer),
        input.status ? eq(jobs.status, input.status) : undefined,
        after
          ? or(lt(jobs.createdAt, after.createdAt), and(eq(jobs.createdAt, after.createdAt), lt(jobs.id, after.id)))
          : undefined,
      ),
    )
    .orderBy(desc(jobs.createdAt), desc(jobs.id))
    .limit(input.limit + 1);
  const pageJobs = page.slice(0, input.limit);
  if (pageJobs.length === 0) return { jobs: [], nextCursor: null };
  const ids = pageJobs.map((j) => j.id);
  const [sourceRows, countRows] = await db.batch([
    db.select().from(sources).where(inArray(sources.jobId, ids)),
    db
      .select({
        jobId: variations.jobId,
        sourceId: variations.sourceId,
        status: variations.status,
        n: count(),
        progressSum: sql<number>`coalesce(sum(${variations.progress}), 0)`.mapWith(Number),
      })
      .from(variations)
      .where(inArray(variations.jobId, ids))
      .groupBy(variations.jobId, variations.sourceId, variations.status),
  ]);
  return {
    jobs: pageJobs.map((j) =>
      presentJob(
        j,
        sourceRows.filter((s) => s.jobId === j.id),
        countRows.filter((c) => c.jobId === j.id),
        null,
        now,
      ),
    ),
    nextCursor: page.length > input.limit ? encodeCursor(pageJobs[pageJobs.length - 1]!) : null,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Cancel

type CancelOutcome =
  | { kind: "not_found" }
  | { kind: "not_cancellable"; record: JobRecord; previousStatus: JobStatus }
  | { kind: "requested"; record: JobRecord; previousStatus: JobStatus };

/**
 * The cancel compare-and-set, one atomic batch: queued → cancelled (finished now, every variation cancelled);
 * processing → cancelling with the request recorded and queued variations cancelled, running ones left to their
 * runners (which stop FFmpeg and call finalizeJob). Cancelled/cancelling jobs are left as they are (idempotent).
 * When cancelling leaves no running variation, nobody else would finalize the job, so it is finalized here.
 */
async function requestCancel(
  db: Db,
  input: { jobId: string; viewer: Viewer; reason?: string | null },
  now: number,
): Promise<CancelOutcome> {
  const mine = and(eq(jobs.id, input.jobId), ownedBy(input.viewer));
  const wasQueued = sql`${jobs.status} = 'queued'`;
  const [before, , , afterJob, sourceRows, variationRows] = await db.batch([
    db.select({ status: jobs.status }).from(jobs).where(mine),
    db
      .update(jobs)
      .set({
        status: sql`case when ${wasQueued} then 'cancelled' else 'cancelling' end`,
        cancelRequestedAt: now,
        cancelledBy: input.viewer.email,
        cancelReason: input.reason ?? null,
        cancelledAt: sql`case when ${wasQueued} then ${now} else null end`,
        completedAt: sql`case when ${wasQueued} then ${now} else null end`,
        expiresAt: sql`case when ${wasQueued} then ${now} + ${jobs.retentionMs} else null end`,
        updatedAt: now,
      })
      .where(and(mine, inArray(jobs.status, ["queued", "processing"]))),
    // Also sweeps variations put back to the queue by lease recovery after an earlier cancel request:
    // no runner would ever claim them, so they would keep the job cancelling forever.
    db
      .update(variations)
      .set({ status: "cancelled", finishedAt: now, leaseExpiresAt: null })
      .where(
        and(
          eq(variations.jobId, input.jobId),
          eq(variations.status, "queued"),
          sql`exists (select 1 from ${jobs} where ${mine} and ${jobs.status} in ('cancelled', 'cancelling'))`,
        ),
      ),
    db.select().from(jobs).where(mine),
    db.select().from(sources).where(eq(sources.jobId, input.jobId)),
    db.select().from(variations).where(eq(variations.jobId, input.jobId)),
  ]);
  const previousStatus = before[0]?.status;
  let job = afterJob[0];
  if (!previousStatus || !job) return { kind: "not_found" };
  let record: JobRecord = { job, sources: sourceRows, variations: variationRows };
  if (previousStatus === "completed" || previousStatus === "failed") {
    return { kind: "not_cancellable", record, previousStatus };
  }
  if (job.status === "cancelling" && !variationRows.some((v) => v.status === "running")) {
    await finalizeJob(db, job.id, now);
    record = await loadRecord(db, job.id, input.viewer);
  }
  return { kind: "requested", record, previousStatus };
}

export interface CancelResult {
  job: JobView;
  /** True when the job reached a terminal state (reply 200), false while it is still cancelling (reply 202). */
  settled: boolean;
}

/**
 * Cancels one job and waits up to `waitMs` for it to reach a terminal state, polling the database (runners
 * report through it). Completed/failed jobs are a ConflictError carrying the job.
 */
export async function cancelJob(
  db: Db,
  input: { jobId: string; viewer: Viewer; reason?: string | null },
  opts: { now: number; waitMs: number; pollMs?: number },
): Promise<CancelResult> {
  const outcome = await requestCancel(db, input, opts.now);
  if (outcome.kind === "not_found") throw new NotFoundError("No such job");
  const { previousStatus } = outcome;
  if (outcome.kind === "not_cancellable") {
    const job = presentRecord(outcome.record, opts.now, previousStatus);
    throw new ConflictError("not_cancellable", `A ${previousStatus} job cannot be cancelled`, { job });
  }
  let record = outcome.record;
  const deadline = Date.now() + opts.waitMs;
  while (!isTerminal(record.job.status) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 200, Math.max(0, deadline - Date.now()))));
    record = await loadRecord(db, input.jobId, input.viewer);
  }
  return { job: presentRecord(record, Date.now(), previousStatus), settled: isTerminal(record.job.status) };
}

export interface BulkCancelResult {
  id: string;
  status: JobStatus | null;
  previousStatus: JobStatus | null;
  /** Set when this job was not cancelled. */
  error?: "not_found" | "not_cancellable";
}

/** Upper bound for one bulk request, so a huge queue cannot turn one request into minutes of work. */
export const BULK_CANCEL_MAX = 200;

/** Requests cancellation of several jobs (by ids, or every visible job in a status); does not wait. */
export async function cancelJobs(
  db: Db,
  input: { viewer: Viewer; ids?: string[]; status?: "queued" | "processing"; reason?: string | null },
  now: number,
): Promise<BulkCancelResult[]> {
  let ids = input.ids ?? [];
  if (input.status) {
    const rows = await db
      .select({ id: jobs.id })
      .from(jobs)
      .where(and(ownedBy(input.viewer), eq(jobs.status, input.status)))
      .orderBy(asc(jobs.createdAt), asc(jobs.id))
      .limit(BULK_CANCEL_MAX);
    ids = rows.map((r) => r.id);
  }
  const results: BulkCancelResult[] = [];
  for (const id of ids) {
    const outcome = await requestCancel(db, { jobId: id, viewer: input.viewer, reason: input.reason }, now);
    if (outcome.kind === "not_found") {
      results.push({ id, status: null, previousStatus: null, error: "not_found" });
    } else {
      results.push({
        id,
        status: outcome.record.job.status,
        previousStatus: outcome.previousStatus,
        ...(outcome.kind === "not_cancellable" ? { error: "not_cancellable" } : {}),
      });
    }
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs, download, thumbnail, deletion

export interface DownloadEntry {
  sourceId: string;
  sourceName: string;
  sourcePosition: number;
  position: number;
  key: string;
  size: number;
  finishedAt: number | null;
}

async function loadJobRow(db: Db, jobId: string, viewer: Viewer): Promise<JobRow> {
  const [job] = await db.select().from(jobs).where(and(eq(jobs.id, jobId), ownedBy(viewer)));
  if (!job) throw new NotFoundError("No such job");
  return job;
}

function assertNotExpired(job: JobRow, now: number): void {
  if (job.expiresAt !== null && job.expiresAt <= now) {
    throw new GoneError("This job's files have expired", "expired");
  }
}

/** The completed outputs of a finished job, in source then variation order, for the ZIP download. */
export async function getJobDownload(
  db: Db,
  input: { jobId: string; viewer: Viewer },
  now: number,
): Promise<{ job: JobRow; entries: DownloadEntry[] }> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  if (job.status !== "completed" && job.status !== "cancelled") {
    throw new ConflictError("not_downloadable", `A ${job.status} job has no download yet`);
  }
  assertNotExpired(job, now);
  const rows = await db
    .select({
      sourceId: sources.id,
      sourceName: sources.name,
      sourcePosition: sources.position,
      position: variations.position,
      key: variations.outputKey,
      size: variations.outputSize,
      finishedAt: variations.finishedAt,
    })
    .from(variations)
    .innerJoin(sources, eq(sources.id, variations.sourceId))
    .where(
      and(
        eq(variations.jobId, job.id),
        eq(variations.status, "completed"),
        isNotNull(variations.outputKey),
        isNotNull(variations.outputSize),
      ),
    )
    .orderBy(asc(sources.position), asc(variations.position));
  if (rows.length === 0) throw new NotFoundError("This job has no completed outputs", "no_outputs");
  return { job, entries: rows.map((r) => ({ ...r, key: r.key!, size: r.size! })) };
}

/** One completed output (for in-page preview); the output id is the variation id. */
export async function getJobOutput(
  db: Db,
  input: { jobId: string; outputId: string; viewer: Viewer },
  now: number,
): Promise<{ key: string; size: number }> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  assertNotExpired(job, now);
  const [row] = await db
    .select({ key: variations.outputKey, size: variations.outputSize })
    .from(variations)
    .where(
      and(eq(variations.id, input.outputId), eq(variations.jobId, job.id), eq(variations.status, "completed")),
    );
  if (!row?.key || row.size === null) throw new NotFoundError("No such output");
  return { key: row.key, size: row.size };
}

export async function getJobThumbnailKey(db: Db, input: { jobId: string; viewer: Viewer }): Promise<string> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  if (!job.thumbnailKey) throw new NotFoundError("This job has no thumbnail", "no_thumbnail");
  return job.thumbnailKey;
}

/** Checks that the viewer may delete the job now (it exists, is theirs and is finished). */
export async function assertJobDeletable(db: Db, input: { jobId: string; viewer: Viewer }): Promise<void> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  if (!isTerminal(job.status)) {
    throw new ConflictError("job_active", `A ${job.status} job cannot be deleted; cancel it first`);
  }
}
