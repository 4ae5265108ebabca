import { and, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../../client";
import { DEFAULT_EFFECTS, normalizeEffects, type JobEffects } from "../../effects";
import { ConflictError, ValidationError } from "../../errors";
import { newId } from "../../ids";
import type { QuotaRequest, UserLimits } from "../../limits";
import { explainRefusal } from "../quotas/explain-refusal";
import { isOwnerRefused, ownerIfFits } from "../quotas/usage";
import { ingests, jobs, sources, uploads, variations } from "../../schema";
import { FRESH_VARIATION } from "./reopen";
import { presentRecord, type JobRecord, type JobRow, type JobView, type SourceRow, type VariationRow } from "./present";

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
  /** Validated by the caller (EffectsSchema); absent = the default look. */
  effects?: JobEffects;
  /** The request's `Idempotency-Key` (validated by the caller): at most one job per user and key. */
  idempotencyKey?: string | null;
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
    queuedAt: now,
    startedAt: null,
    completedAt: null,
    cancelRequestedAt: null,
    cancelledAt: null,
    cancelledBy: null,
    cancelReason: null,
    retentionMs: input.retentionMs,
    expiresAt: null,
    updatedAt: now,
    effects: JSON.stringify(normalizeEffects(input.effects ?? DEFAULT_EFFECTS)),
    idempotencyKey: input.idempotencyKey ?? null,
    reopenKey: null,
    reopenRequest: null,
    reopenedAt: null,
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
      ...FRESH_VARIATION,
      claims: 0,
      // Same timestamp for the whole job; the claim order then falls back to rowid, i.e. insertion order.
      createdAt: now,
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
 * The error to throw for a failed job insert: a quota error when its owner came out NULL because the job did not
 * fit; the original error otherwise, and also when (form upload) the ingest row is gone: the caller settles that.
 */
async function refusal(db: Db, err: unknown, input: { userId: string; limits: UserLimits; request: QuotaRequest; ingestId?: string }) {
  if (!isOwnerRefused(err, "jobs")) return err;
  if (input.ingestId) {
    const [row] = await db.select({ id: ingests.id }).from(ingests).where(eq(ingests.id, input.ingestId));
    if (!row) return err;
  }
  // Without the ingest's own room, as the insert counted: the job would have given it back for its sources.
  return explainRefusal(db, input.userId, input.limits, input.request, input.ingestId);
}

/**
 * Creates the job of a form upload whose sources are stored: job, sources and variations in one batch that also
 * deletes the ingest row. The job's owner is read from that row, and only when the job fits the owner's limits
 * (active jobs, queued variations, storage with these sources added — checked in the insert itself), so when the
 * ingest was abandoned (or reaped), or the job would go over a limit, the NOT NULL user_id fails the batch and
 * nothing is created: a commit and an abandonIngest cannot both succeed, and whoever deleted the row knows whether
 * the objects belong to a job. Over a limit: a quota error (the ingest row stays for the caller to abandon).
 */
export async function createJobFromIngest(
  db: Db,
  input: NewJob & { sources: NewSource[]; limits: UserLimits },
  now: number,
): Promise<JobView> {
  const record = buildRecord(input, input.sources, now);
  // Its sources are stored but counted nowhere yet.
  const storageBytes = input.sources.reduce((n, s) => n + s.size, 0);
  const request: QuotaRequest = { activeJobs: 1, queuedVariations: record.job.totalVariations, storageBytes };
  const ingestOwner = sql`(select ${ingests.userId} from ${ingests} where ${ingests.id} = ${input.id} and ${ingests.userId} = ${input.userId})`;
  try {
    await db.batch([
      // Storage: the ingest's room is given back for its sources in the same batch, so it is not counted.
      db.insert(jobs).values({ ...record.job, userId: ownerIfFits(ingestOwner, input.userId, input.limits, request, input.id) }),
      db.insert(sources).values(record.sources),
      db.insert(variations).values(record.variations),
      db.delete(ingests).where(eq(ingests.id, input.id)),
    ]);
  } catch (err) {
    throw await refusal(db, err, { userId: input.userId, limits: input.limits, request, ingestId: input.id });
  }
  return presentRecord(record, now);
}

type UploadRow = typeof uploads.$inferSelect;

/** The user's rows among these uploads (another user's are not there: they are unknown to this user). */
function readUploads(db: Db, userId: string, uploadIds: string[]): Promise<UploadRow[]> {
  return db.select().from(uploads).where(and(inArray(uploads.id, uploadIds), eq(uploads.userId, userId)));
}

/**
 * Why the job cannot be made of these uploads, read from their rows: unknown (or another user's), still uploading,
 * already consumed (naming the job it fed: most often the same request again after its answer was lost) or aborted.
 * Null when every one is completed.
 */
async function uploadsRefusal(db: Db, rows: UploadRow[], uploadIds: string[]): Promise<Error | null> {
  const byId = new Map(rows.map((u) => [u.id, u]));
  for (const id of uploadIds) {
    const u = byId.get(id);
    if (!u) return new ValidationError(`uploads: unknown upload ${id}`, "uploads");
    if (u.status === "uploading") return new ConflictError("upload_incomplete", `Upload ${id} is not complete yet`);
    if (u.status === "consumed") {
      const [fed] = await db.select({ jobId: sources.jobId }).from(sources).where(eq(sources.objectKey, u.objectKey)).limit(1);
      return new ConflictError("upload_used", `Upload ${id} was already used by a job`, fed ? { jobId: fed.jobId } : undefined);
    }
    if (u.status !== "completed") return new ConflictError("upload_used", `Upload ${id} was already used or aborted`);
  }
  return null;
}

/**
 * Creates a job from completed large-file uploads, in one batch (one round trip, so the database's write lock is
 * never held while the Worker waits: an interactive transaction here held it across five round trips, and a
 * request cancelled midway left every other user's writes waiting for the server to expire its stream). The job
 * row's owner is NULL — failing the batch, so nothing is created — unless the job fits the owner's limits and every
 * upload is still the owner's and completed when the batch runs; the uploads then move completed → consumed in
 * the same batch, so one upload feeds one job. The rows read beforehand only name the sources; after a failure they
 * are read again to say why.
 */
export async function createJobFromUploads(
  db: Db,
  input: NewJob & { uploadIds: string[]; limits: UserLimits },
  now: number,
): Promise<JobView> {
  // The uploads still count as unused when the job row goes in: consuming them moves their bytes to sources.
  const request: QuotaRequest = { activeJobs: 1, queuedVariations: input.uploadIds.length * input.variationsPerVideo, storageBytes: 0 };
  const ids = [...new Set(input.uploadIds)];
  const rows = await readUploads(db, input.userId, ids);
  const refused = await uploadsRefusal(db, rows, input.uploadIds);
  if (refused) throw refused;
  const byId = new Map(rows.map((u) => [u.id, u]));
  const record = buildRecord(
    input,
    input.uploadIds.map((id) => {
      const u = byId.get(id)!;
      return { id: newId(), name: u.filename, size: u.size, contentType: u.contentType ?? "application/octet-stream", objectKey: u.objectKey };
    }),
    now,
  );
  const stillCompleted = and(inArray(uploads.id, ids), eq(uploads.userId, input.userId), eq(uploads.status, "completed"));
  const owner = sql`(select ${input.userId} where (select count(*) from ${uploads} where ${stillCompleted}) = ${ids.length})`;
  try {
    await db.batch([
      db.insert(jobs).values({ ...record.job, userId: ownerIfFits(owner, input.userId, input.limits, request) }),
      db.update(uploads).set({ status: "consumed" }).where(stillCompleted),
      db.insert(sources).values(record.sources),
      db.insert(variations).values(record.variations),
    ]);
  } catch (err) {
    if (!isOwnerRefused(err, "jobs")) throw err;
    // An upload used, aborted or dropped meanwhile; otherwise the limits refused the job.
    throw (await uploadsRefusal(db, await readUploads(db, input.userId, ids), input.uploadIds)) ?? (await refusal(db, err, { userId: input.userId, limits: input.limits, request }));
  }
  return presentRecord(record, now);
}
