import { sql } from "drizzle-orm";
import type { Db } from "../client";

export interface SourceProbe {
  durationMs: number;
  width: number;
  height: number;
  hasAudio: boolean;
}

/** Stores what ffprobe found in a source; first writer wins (every runner probes the same bytes). */
export async function recordSourceProbe(db: Db, sourceId: string, probe: SourceProbe): Promise<void> {
  await db.run(sql`
    UPDATE sources SET duration_ms = ${Math.round(probe.durationMs)}, width = ${probe.width},
      height = ${probe.height}, has_audio = ${probe.hasAudio ? 1 : 0}
    WHERE id = ${sourceId} AND duration_ms IS NULL`);
}

/** Records the job's thumbnail object once (CAS on thumbnail_key IS NULL); returns whether this call set it. */
export async function setJobThumbnail(db: Db, jobId: string, key: string, now: number): Promise<boolean> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE jobs SET thumbnail_key = ${key}, updated_at = ${now}
    WHERE id = ${jobId} AND thumbnail_key IS NULL RETURNING id`);
  return rows.length > 0;
}
