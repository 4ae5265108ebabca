import { and, asc, eq, exists, gte, inArray, isNotNull, sql, type Column } from "drizzle-orm";
import { sourceKey } from "../keys";
import type { Db } from "../client";
import { ingests, jobs, sources, uploads, variations, TERMINAL_JOB_STATUSES } from "../schema";

/** Every object key a job's rows record: sources, outputs, variation thumbnails and the job's thumbnail. */
export async function jobObjectKeys(db: Db, jobId: string): Promise<string[]> {
  const [sourceKeys, outputKeys, jobRows, thumbKeys] = await db.batch([
    db.select({ key: sources.objectKey }).from(sources).where(eq(sources.jobId, jobId)),
    db
      .select({ key: variations.outputKey })
      .from(variations)
      .where(and(eq(variations.jobId, jobId), isNotNull(variations.outputKey))),
    db.select({ key: jobs.thumbnailKey }).from(jobs).where(eq(jobs.id, jobId)),
    db
      .select({ key: variations.thumbnailKey })
      .from(variations)
      .where(and(eq(variations.jobId, jobId), isNotNull(variations.thumbnailKey))),
  ]);
  return [...sourceKeys, ...outputKeys, ...jobRows, ...thumbKeys].flatMap((r) => (r.key ? [r.key] : []));
}

/**
 * Deletes a finished job's rows (sources and variations cascade) and the consumed uploads that fed it (their parts
 * cascade). The status guard makes it a CAS: an active job is never deleted. True when the job row went away.
 */
export async function deleteFinishedJobRows(db: Db, jobId: string): Promise<boolean> {
  const finished = and(eq(jobs.id, jobId), inArray(jobs.status, [...TERMINAL_JOB_STATUSES]));
  const [, gone] = await db.batch([
    // First, while the source rows still name the upload objects; only if the job delete below applies too.
    db
      .delete(uploads)
      .where(
        and(
          eq(uploads.status, "consumed"),
          inArray(uploads.objectKey, db.select({ key: sources.objectKey }).from(sources).where(eq(sources.jobId, jobId))),
          exists(db.select({ one: sql`1` }).from(jobs).where(finished)),
        ),
      ),
    db.delete(jobs).where(finished).returning({ id: jobs.id }),
  ]);
  return gone.length === 1;
}

/**
 * Which of `keys` some row still records (source, output, job or variation thumbnail, upload), counting the objects of a form
 * upload in flight (an ingest touched at or after `liveIngestSince`) as recorded: its job row does not exist yet.
 */
export async function recordedObjectKeys(db: Db, keys: string[], liveIngestSince: number): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  // A source key is sources/<job>/<source>: the candidate ingest id is its second segment.
  const ingestOf = (key: string): string | null => {
    const id = key.split("/")[1];
    return id && key.startsWith(sourceKey(id, "")) ? id : null;
  };
  const ingestIds = [...new Set(keys.flatMap((k) => ingestOf(k) ?? []))];
  const [a, b, c, d, e, f] = await db.batch([
    db.select({ key: sources.objectKey }).from(sources).where(inArray(sources.objectKey, keys)),
    db.select({ key: variations.outputKey }).from(variations).where(inArray(variations.outputKey, keys)),
    db.select({ key: jobs.thumbnailKey }).from(jobs).where(inArray(jobs.thumbnailKey, keys)),
    db.select({ key: uploads.objectKey }).from(uploads).where(inArray(uploads.objectKey, keys)),
    db
      .select({ id: ingests.id })
      .from(ingests)
      .where(and(inArray(ingests.id, ingestIds), gte(ingests.touchedAt, liveIngestSince))),
    db.select({ key: variations.thumbnailKey }).from(variations).where(inArray(variations.thumbnailKey, keys)),
  ]);
  const live = new Set(e.map((r) => r.id));
  const recorded = new Set([...a, ...b, ...c, ...d, ...f].flatMap((r) => (r.key ? [r.key] : [])));
  for (const k of keys) if (live.has(ingestOf(k) ?? "")) recorded.add(k);
  return recorded;
}

/** When a finished job counts as finished, for eviction: its finish time (or creation, for one that never ran). */
const finishedAt = sql`coalesce(${jobs.completedAt}, ${jobs.createdAt})`;
const evictable = (finishedBefore: number) =>
  and(inArray(jobs.status, [...TERMINAL_JOB_STATUSES]), sql`${finishedAt} <= ${finishedBefore}`);

/**
 * Bytes the recorded objects occupy (sources incl. completed uploads, plus outputs), and how many of them evicting
 * every job finished at or before `finishedBefore` would free.
 */
export async function storageUsage(db: Db, finishedBefore: number): Promise<{ usedBytes: number; freeableBytes: number }> {
  const sum = (col: Column) =>
    sql<number>`coalesce(sum(${col}), 0)`.mapWith(Number);
  const [s, v, u, fs, fv] = await db.batch([
    db.select({ n: sum(sources.size) }).from(sources),
    db.select({ n: sum(variations.outputSize) }).from(variations),
    db.select({ n: sum(uploads.size) }).from(uploads).where(eq(uploads.status, "completed")),
    db.select({ n: sum(sources.size) }).from(sources).innerJoin(jobs, eq(jobs.id, sources.jobId)).where(evictable(finishedBefore)),
    db
      .select({ n: sum(variations.outputSize) })
      .from(variations)
      .innerJoin(jobs, eq(jobs.id, variations.jobId))
      .where(evictable(finishedBefore)),
  ]);
  const n = (rows: { n: number }[]) => rows[0]?.n ?? 0;
  return { usedBytes: n(s) + n(v) + n(u), freeableBytes: n(fs) + n(fv) };
}

/** Jobs finished at or before `finishedBefore`, oldest finish first, with the bytes each one frees when evicted. */
export async function listEvictableJobs(
  db: Db,
  finishedBefore: number,
  limit: number,
): Promise<{ id: string; bytes: number }[]> {
  // Spelled out with aliases: drizzle leaves columns of the selected table unqualified inside select fields, and an
  // unqualified "id" in the subquery would bind to the inner table instead of the job.
  const rows = await db
    .select({
      id: jobs.id,
      sourceBytes: sql<number>`(select coalesce(sum(s.size), 0) from sources s where s.job_id = jobs.id)`.mapWith(Number),
      outputBytes: sql<number>`(select coalesce(sum(v.output_size), 0) from variations v where v.job_id = jobs.id)`.mapWith(
        Number,
      ),
    })
    .from(jobs)
    .where(evictable(finishedBefore))
    .orderBy(asc(finishedAt), asc(jobs.id))
    .limit(limit);
  return rows.map((r) => ({ id: r.id, bytes: r.sourceBytes + r.outputBytes }));
}
