import { and, asc, eq, inArray, isNotNull, sql } from "drizzle-orm";
import type { Db } from "../client";
import { jobs, sources, uploads, variations, TERMINAL_JOB_STATUSES } from "../schema";

/** Every object key a job's rows record: sources, outputs and the thumbnail. */
export async function jobObjectKeys(db: Db, jobId: string): Promise<string[]> {
  const [sourceKeys, outputKeys, jobRows] = await db.batch([
    db.select({ key: sources.objectKey }).from(sources).where(eq(sources.jobId, jobId)),
    db
      .select({ key: variations.outputKey })
      .from(variations)
      .where(and(eq(variations.jobId, jobId), isNotNull(variations.outputKey))),
    db.select({ key: jobs.thumbnailKey }).from(jobs).where(eq(jobs.id, jobId)),
  ]);
  return [...sourceKeys, ...outputKeys, ...jobRows].flatMap((r) => (r.key ? [r.key] : []));
}

/**
 * Deletes a finished job's rows (sources and variations cascade). The status guard makes it a CAS: an active
 * job is never deleted. True when the row went away.
 */
export async function deleteFinishedJobRows(db: Db, jobId: string): Promise<boolean> {
  const gone = await db
    .delete(jobs)
    .where(and(eq(jobs.id, jobId), inArray(jobs.status, [...TERMINAL_JOB_STATUSES])))
    .returning({ id: jobs.id });
  return gone.length === 1;
}

/** Which of `keys` some row still records (source, output, thumbnail or upload). */
export async function recordedObjectKeys(db: Db, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const [a, b, c, d] = await db.batch([
    db.select({ key: sources.objectKey }).from(sources).where(inArray(sources.objectKey, keys)),
    db.select({ key: variations.outputKey }).from(variations).where(inArray(variations.outputKey, keys)),
    db.select({ key: jobs.thumbnailKey }).from(jobs).where(inArray(jobs.thumbnailKey, keys)),
    db.select({ key: uploads.objectKey }).from(uploads).where(inArray(uploads.objectKey, keys)),
  ]);
  return new Set([...a, ...b, ...c, ...d].flatMap((r) => (r.key ? [r.key] : [])));
}

/** Bytes the recorded objects occupy: sources (incl. completed uploads) plus outputs. */
export async function storedBytes(db: Db): Promise<number> {
  const [s, v, u] = await db.batch([
    db.select({ n: sql<number>`coalesce(sum(${sources.size}), 0)`.mapWith(Number) }).from(sources),
    db.select({ n: sql<number>`coalesce(sum(${variations.outputSize}), 0)`.mapWith(Number) }).from(variations),
    db
      .select({ n: sql<number>`coalesce(sum(${uploads.size}), 0)`.mapWith(Number) })
      .from(uploads)
      .where(eq(uploads.status, "completed")),
  ]);
  return (s[0]?.n ?? 0) + (v[0]?.n ?? 0) + (u[0]?.n ?? 0);
}

/** Finished jobs, oldest finish first, with the bytes each one frees when evicted. */
export async function listEvictableJobs(db: Db, limit: number): Promise<{ id: string; bytes: number }[]> {
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
    .where(inArray(jobs.status, [...TERMINAL_JOB_STATUSES]))
    .orderBy(asc(sql`coalesce(${jobs.completedAt}, ${jobs.createdAt})`), asc(jobs.id))
    .limit(limit);
  return rows.map((r) => ({ id: r.id, bytes: r.sourceBytes + r.outputBytes }));
}
