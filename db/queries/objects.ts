import { and, eq, exists, gte, inArray, isNotNull, sql } from "drizzle-orm";
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
          // Unary + keeps SQLite off the status index (nothing runs ANALYZE, so without it the planner walked every
          // consumed upload of every user, under the write lock, once per purged job): the object key finds the rows.
          sql`+${uploads.status} = 'consumed'`,
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

