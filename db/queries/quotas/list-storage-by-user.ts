import { sql } from "drizzle-orm";
import type { Db } from "../../client";

/**
 * Stored bytes per user (sources, outputs, unused uploads — `storedBytesOf`), for every user holding any: the storage
 * cap's once-a-minute view of the whole bucket. One row per user (`users.stored_bytes`, kept by triggers), not a pass
 * over every source, variation and upload.
 */
export async function listStorageByUser(db: Db): Promise<{ userId: string; bytes: number }[]> {
  const rows = await db.all<{ userId: string; bytes: number }>(sql`SELECT id AS userId, stored_bytes AS bytes FROM users WHERE stored_bytes > 0`);
  return rows.map((r) => ({ userId: r.userId, bytes: Number(r.bytes) }));
}
