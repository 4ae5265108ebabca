import { eq } from "drizzle-orm";
import type { Db } from "../client";
import { sweepCursors } from "../schema";

/** The last key a bucket walk named `name` handled; "" before its first tick and after a full pass. */
export async function readSweepCursor(db: Db, name: string): Promise<string> {
  const [row] = await db.select({ lastKey: sweepCursors.lastKey }).from(sweepCursors).where(eq(sweepCursors.name, name));
  return row?.lastKey ?? "";
}

/**
 * Stores where the walk stopped. Last writer wins: two overlapping ticks walk the same keys, which only repeats
 * work (deleting an orphan twice is harmless).
 */
export async function saveSweepCursor(db: Db, name: string, lastKey: string, now: number): Promise<void> {
  await db
    .insert(sweepCursors)
    .values({ name, lastKey, updatedAt: now })
    .onConflictDoUpdate({ target: sweepCursors.name, set: { lastKey, updatedAt: now } });
}
