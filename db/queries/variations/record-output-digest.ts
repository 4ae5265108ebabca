import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import type { OutputDigest } from "./settle";

/**
 * Keeps the digest the edge computed for an output recorded before runners recorded one (the first download of such
 * a job reads it whole once). Compare-and-set on the exact output still being recorded and still without a digest:
 * a re-opened or re-run variation has another key, and a digest already there is never overwritten. The key is
 * attempt-scoped and its bytes never change once recorded, so whoever computed the digest computed the same one.
 */
export async function recordOutputDigest(
  db: Db,
  input: { jobId: string; outputKey: string; outputSize: number; digest: OutputDigest },
): Promise<boolean> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE variations SET output_sha256 = ${input.digest.sha256}, output_crc32 = ${input.digest.crc32}
    WHERE job_id = ${input.jobId} AND output_key = ${input.outputKey} AND output_size = ${input.outputSize}
      AND status = 'completed' AND output_sha256 IS NULL
    RETURNING id`);
  return rows.length > 0;
}
