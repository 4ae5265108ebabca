import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { finalizeJobStatement } from "../finalize";

/**
 * A source that is not decodable video: fails every queued or running variation of it at once (whoever runs them
 * notices the lost lease on its next heartbeat), records the reason on the source and finalizes the job. Not an
 * ownership CAS on purpose: the verdict is about the file, not about one attempt. Returns how many were failed.
 */
export async function failSourceVariations(
  db: Db,
  input: { sourceId: string; error: string; now: number },
): Promise<number> {
  const { sourceId, error, now } = input;
  const [rows] = await db.batch([
    db.all<{ id: string }>(sql`
      UPDATE variations SET status = 'failed', finished_at = ${now}, lease_expires_at = NULL, error = ${error}
      WHERE source_id = ${sourceId} AND status IN ('queued', 'running') RETURNING id`),
    db.run(sql`UPDATE sources SET error = ${error} WHERE id = ${sourceId}`),
    finalizeJobStatement(db, sql`jobs.id = (SELECT job_id FROM sources WHERE id = ${sourceId})`, now),
  ]);
  return rows.length;
}
