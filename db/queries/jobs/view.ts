import { and, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { variations } from "../../schema";
import { estimateQueue, ownWorkOf, type QueueSnapshotSource } from "./estimate-queue";
import { assertNotExpired, loadJobRow, loadRecord } from "./load";
import { presentRecord, type JobView, type Viewer } from "./present";

/** The job as its owner (or an admin) sees it. `queue`: where its estimate's shared half comes from (see estimateQueue). */
export async function getJob(db: Db, input: { jobId: string; viewer: Viewer }, now: number, queue?: QueueSnapshotSource): Promise<JobView> {
  const record = await loadRecord(db, input.jobId, input.viewer);
  const own = new Map([[record.job.id, ownWorkOf(record.variations)]]);
  const estimate = (await estimateQueue(db, [record.job], now, { snapshot: queue, own })).get(record.job.id);
  return presentRecord(record, now, undefined, estimate);
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

/** The still of one completed variation (owner-checked like its output); 404 no_thumbnail when there is none. */
export async function getVariationThumbnailKey(
  db: Db,
  input: { jobId: string; outputId: string; viewer: Viewer },
  now: number,
): Promise<string> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  assertNotExpired(job, now);
  const [row] = await db
    .select({ key: variations.thumbnailKey })
    .from(variations)
    .where(and(eq(variations.id, input.outputId), eq(variations.jobId, job.id), eq(variations.status, "completed")));
  if (!row?.key) throw new NotFoundError("This variation has no thumbnail", "no_thumbnail");
  return row.key;
}

export async function getJobThumbnailKey(db: Db, input: { jobId: string; viewer: Viewer }): Promise<string> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  if (!job.thumbnailKey) throw new NotFoundError("This job has no thumbnail", "no_thumbnail");
  return job.thumbnailKey;
}

