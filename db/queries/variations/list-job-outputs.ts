import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import type { JobStatus } from "../../schema";

/**
 * The job's status and the keys under outputs/<job>/ the database records for it — outputs and variation
 * thumbnails (orphan sweep) — or null if the job is gone.
 */
export async function getJobOutputs(
  db: Db,
  jobId: string,
): Promise<{ status: JobStatus; outputKeys: string[] } | null> {
  const rows = await db.all<{ status: JobStatus; outputKey: string | null; thumbnailKey: string | null }>(sql`
    SELECT j.status AS status, v.output_key AS outputKey, v.thumbnail_key AS thumbnailKey
    FROM jobs j LEFT JOIN variations v ON v.job_id = j.id AND (v.output_key IS NOT NULL OR v.thumbnail_key IS NOT NULL)
    WHERE j.id = ${jobId}`);
  if (rows.length === 0) return null;
  return {
    status: rows[0]!.status,
    outputKeys: rows.flatMap((r) => [r.outputKey, r.thumbnailKey].filter((k): k is string => k !== null)),
  };
}
