import { sql } from "drizzle-orm";
import type { Db } from "../client";

/**
 * Whether the database records `key` (a variation's output or thumbnail, a job's thumbnail, a source). The one guard behind
 * every runner-side delete: an object the database records is never deleted by a runner, whatever the runner
 * believes about its lease. Output keys name their job (db/keys.ts), so the lookup uses the job index.
 */
export async function isObjectRecorded(db: Db, key: string): Promise<boolean> {
  const job = /^(?:outputs|sources)\/([^/]+)\//.exec(key)?.[1] ?? /^thumbs\/([^/]+)\.jpg$/.exec(key)?.[1] ?? null;
  const inJob = job === null ? sql`1` : sql`job_id = ${job}`;
  const rows = await db.all<{ hit: number }>(sql`
    SELECT 1 AS hit WHERE EXISTS (SELECT 1 FROM variations WHERE ${inJob} AND output_key = ${key})
      OR EXISTS (SELECT 1 FROM variations WHERE ${inJob} AND thumbnail_key = ${key})
      OR EXISTS (SELECT 1 FROM jobs WHERE thumbnail_key = ${key})
      OR EXISTS (SELECT 1 FROM sources WHERE ${inJob} AND object_key = ${key})`);
  return rows.length > 0;
}
