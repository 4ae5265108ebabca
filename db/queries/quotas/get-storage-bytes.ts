import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { storedBytesOf } from "./usage";

/** The bytes one user holds now (sources, outputs, unused uploads): the storage cap's re-read before each eviction. */
export async function getStorageBytes(db: Db, userId: string): Promise<number> {
  const [row] = await db.all<{ bytes: number }>(sql`SELECT ${storedBytesOf(userId)} AS bytes`);
  return Number(row?.bytes ?? 0);
}
