import { and, asc, eq, isNotNull } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError, NotFoundError } from "../../errors";
import { sources, variations } from "../../schema";
import { assertNotExpired, loadJobRow } from "./load";
import type { JobRow, Viewer } from "./present";

export interface DownloadEntry {
  sourceId: string;
  sourceName: string;
  sourcePosition: number;
  position: number;
  key: string;
  size: number;
  /** Recorded with the output (null for outputs recorded before digests were kept: computed on first download). */
  sha256: string | null;
  crc32: number | null;
  finishedAt: number | null;
  seed: number;
  /** The parameters the runner recorded for this output (JSON text), for the ZIP's manifest. */
  params: string | null;
  /** From the runner's probe of the source; null if it was never recorded. */
  sourceDurationMs: number | null;
  /** The runner's quality figures (runner/quality.ts); null when not measured. */
  ssim: number | null;
  psnr: number | null;
  distinct: number | null;
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
      sha256: variations.outputSha256,
      crc32: variations.outputCrc32,
      finishedAt: variations.finishedAt,
      seed: variations.seed,
      params: variations.params,
      sourceDurationMs: sources.durationMs,
      ssim: variations.ssim,
      psnr: variations.psnr,
      distinct: variations.distinct,
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

