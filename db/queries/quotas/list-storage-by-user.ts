import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { UNUSED_UPLOAD_STATUSES } from "./usage";

/**
 * Stored bytes per user (sources, outputs, unused uploads — what `storedBytesOf` counts for one user), for every
 * user holding any. One pass over the three tables: the storage cap's once-a-minute view of the whole bucket.
 */
export async function listStorageByUser(db: Db): Promise<{ userId: string; bytes: number }[]> {
  const rows = await db.all<{ userId: string; bytes: number }>(sql`
    SELECT user_id AS userId, sum(bytes) AS bytes FROM (
      SELECT qj.user_id AS user_id, qs.size AS bytes FROM sources qs JOIN jobs qj ON qj.id = qs.job_id
      UNION ALL
      SELECT qj.user_id, qv.output_size FROM variations qv JOIN jobs qj ON qj.id = qv.job_id WHERE qv.output_size IS NOT NULL
      UNION ALL
      SELECT qu.user_id, qu.size FROM uploads qu WHERE qu.status IN ${[...UNUSED_UPLOAD_STATUSES]}
    ) GROUP BY user_id`);
  return rows.map((r) => ({ userId: r.userId, bytes: Number(r.bytes) }));
}
