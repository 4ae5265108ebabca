import { eq, lt } from "drizzle-orm";
import type { Db } from "../client";
import { ingests } from "../schema";

/**
 * A form upload in flight, recorded before its first source object is stored: while the row is live (touched
 * within the orphan rule's age limit) the objects under its `sources/<id>/` prefix count as recorded. The job is
 * created from it by createJobFromIngest, which deletes the row in the same batch.
 */
export async function startIngest(db: Db, input: { id: string; userId: string }, now: number): Promise<void> {
  await db.insert(ingests).values({ id: input.id, userId: input.userId, createdAt: now, touchedAt: now });
}

/** Marks the ingest as still receiving bytes; false when it is gone (reaped as stale, or already a job). */
export async function touchIngest(db: Db, id: string, now: number): Promise<boolean> {
  const rows = await db.update(ingests).set({ touchedAt: now }).where(eq(ingests.id, id)).returning({ id: ingests.id });
  return rows.length === 1;
}

/**
 * Gives an ingest up. True when this call deleted the row: from then on no job can be created from it (the
 * create batch needs the row), so its objects are safe to delete. False when the row was already gone — consumed
 * by a job create that committed, or reaped as stale.
 */
export async function abandonIngest(db: Db, id: string): Promise<boolean> {
  const rows = await db.delete(ingests).where(eq(ingests.id, id)).returning({ id: ingests.id });
  return rows.length === 1;
}

/**
 * Ingests not touched since `touchedBefore`: their request died (a live one touches every few minutes). Deleting
 * the row ends its protection, so the orphan rule removes what it had stored. Returns how many.
 */
export async function deleteStaleIngests(db: Db, touchedBefore: number): Promise<number> {
  const rows = await db.delete(ingests).where(lt(ingests.touchedAt, touchedBefore)).returning({ id: ingests.id });
  return rows.length;
}
