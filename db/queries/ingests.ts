import { and, eq, gt, lt, ne, sql } from "drizzle-orm";
import { REPLAY_SAFE, type Db } from "../client";
import { RESERVE_STEP_BYTES, type UserLimits } from "../limits";
import { ingests } from "../schema";
import { explainRefusal } from "./quotas/explain-refusal";
import { isOwnerRefused, ownerIfFits, storageBytesOf } from "./quotas/usage";

/**
 * A form upload in flight, recorded before its first source object is stored: while the row is live (touched
 * within the orphan rule's age limit) the objects under its `sources/<id>/` prefix count as recorded. The job is
 * created from it by createJobFromIngest, which deletes the row in the same batch.
 *
 * The row also holds `reservedBytes` of the owner's storage quota, admitted in the insert itself: two uploads
 * started at once cannot both be let in on the same room (each read alone, they could store up to twice the quota
 * before their creates refused all but one). An upload not touched for INGEST_HOLD_MS gives its room back
 * (releaseIdleIngestRooms, from the cron); it gets room again only through reserveIngest, which checks the quota.
 * Throws the quota error when it does not fit.
 */
export async function startIngest(
  db: Db,
  input: { id: string; userId: string; reservedBytes?: number; limits?: UserLimits; idempotencyKey?: string | null },
  now: number,
): Promise<void> {
  const reservedBytes = input.reservedBytes ?? 0;
  const request = { storageBytes: reservedBytes };
  const userId = input.limits ? ownerIfFits(input.userId, input.userId, input.limits, request) : input.userId;
  const idempotencyKey = input.idempotencyKey ?? null;
  try {
    await db.insert(ingests).values({ id: input.id, userId, createdAt: now, touchedAt: now, reservedBytes, idempotencyKey });
  } catch (err) {
    if (!input.limits || !isOwnerRefused(err, "ingests")) throw err;
    throw await explainRefusal(db, input.userId, input.limits, request);
  }
}

/**
 * Grows an ingest's room (and touches it) to `aheadBytes`, or to what the owner's quota has left when that is less,
 * as long as it has at least `neededBytes` left: one statement, so a contested quota costs no extra round trips.
 * Returns the room now held, or "gone" (reaped as stale, or already a job); throws the quota error when even
 * `neededBytes` does not fit next to what the owner stores and the other uploads in flight hold.
 */
export async function reserveIngest(
  db: Db,
  input: { id: string; userId: string; neededBytes: number; aheadBytes: number; limits: UserLimits },
  now: number,
): Promise<number | "gone"> {
  const left = sql<number>`(${input.limits.storageBytes} - ${storageBytesOf(input.userId, input.id)})`;
  const rows = await db
    .update(ingests)
    .set({ reservedBytes: sql`min(${input.aheadBytes}, ${left})`, storedBytes: sql`max(${ingests.storedBytes}, ${input.neededBytes})`, touchedAt: now })
    .where(and(eq(ingests.id, input.id), eq(ingests.userId, input.userId), sql`${left} >= ${input.neededBytes}`))
    .returning({ reservedBytes: ingests.reservedBytes });
  if (rows[0]) return rows[0].reservedBytes;
  const [row] = await db.select({ id: ingests.id }).from(ingests).where(eq(ingests.id, input.id));
  if (!row) return "gone";
  throw await explainRefusal(db, input.userId, input.limits, { storageBytes: input.neededBytes }, input.id);
}

/**
 * Marks the ingest as still receiving bytes, with the bytes it has stored so far. Returns the room it holds now (less
 * than before when the cron gave it back after a silence: the caller asks for it again with reserveIngest), or null
 * when it is gone (reaped as stale, or already a job).
 *
 * Replay-safe: it sets given values (`max` keeps the larger record), so a pooled connection that dropped it is
 * sent it again instead of failing an upload that may have streamed gigabytes.
 */
export async function touchIngest(db: Db, id: string, storedBytes: number, now: number): Promise<number | null> {
  const rows = await db.all<{ reservedBytes: number }>(sql`${REPLAY_SAFE}UPDATE ingests
    SET touched_at = ${now}, stored_bytes = max(stored_bytes, ${storedBytes})
    WHERE id = ${id}
    RETURNING reserved_bytes AS reservedBytes`);
  return rows[0]?.reservedBytes ?? null;
}

/**
 * Gives back the room ahead of their stored bytes of form uploads not touched since `touchedBefore` (a live one
 * touches every INGEST_TOUCH_MS): a request that died without saying so (a dropped connection, a lost reply) stops
 * holding its owner's quota within minutes, not when the orphan rule reaps its row an hour later. What they stored
 * stays counted: it is in the bucket until the upload ends or the orphan rule takes it, and counted as nothing,
 * uploads that stalled on purpose let their owner store past the quota. An upload records its stored bytes at
 * least every RESERVE_STEP_BYTES, so it keeps its record plus that much (within what it held); a record above its
 * room (the request died between the two writes) becomes its room. Returns how many.
 */
export async function releaseIdleIngestRooms(db: Db, touchedBefore: number): Promise<number> {
  const kept = sql`max(${ingests.storedBytes}, min(${ingests.reservedBytes}, ${ingests.storedBytes} + ${RESERVE_STEP_BYTES}))`;
  const rows = await db
    .update(ingests)
    .set({ reservedBytes: kept })
    .where(and(lt(ingests.touchedAt, touchedBefore), ne(ingests.reservedBytes, kept)))
    .returning({ id: ingests.id });
  return rows.length;
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

/**
 * Whether a form upload of this user with this Idempotency-Key is still in flight (touched since `touchedAfter`):
 * a request with the same key is then its retry, and should wait for it rather than be refused for its room.
 */
export async function isIngestInFlight(
  db: Db,
  input: { userId: string; idempotencyKey: string; exceptId: string },
  touchedAfter: number,
): Promise<boolean> {
  const [row] = await db
    .select({ id: ingests.id })
    .from(ingests)
    .where(
      and(
        eq(ingests.userId, input.userId),
        eq(ingests.idempotencyKey, input.idempotencyKey),
        ne(ingests.id, input.exceptId),
        gt(ingests.touchedAt, touchedAfter),
      ),
    )
    .limit(1);
  return row !== undefined;
}
