import { eq, lt, sql } from "drizzle-orm";
import type { Db } from "../client";
import { runners } from "../schema";

export interface RunnerBeat {
  id: string;
  host: string;
  version: string;
  concurrency: number;
  /** Variations this runner is working on right now. */
  active: number;
}

/**
 * Insert-or-refresh of the runner's registry row, as a batchable statement so the beat can ride along with the
 * claim poll or the variation heartbeat instead of costing its own round trip.
 */
export function runnerBeatStatement(db: Db, beat: RunnerBeat, now: number) {
  return db
    .insert(runners)
    .values({ ...beat, startedAt: now, lastSeenAt: now })
    .onConflictDoUpdate({
      target: runners.id,
      set: {
        host: beat.host,
        version: beat.version,
        concurrency: beat.concurrency,
        active: beat.active,
        lastSeenAt: now,
      },
    });
}

/** Registers a runner at start (started_at is reset, so a restarted runner with a fixed id shows its new start). */
export async function upsertRunner(db: Db, beat: RunnerBeat, now: number): Promise<void> {
  await db
    .insert(runners)
    .values({ ...beat, startedAt: now, lastSeenAt: now })
    .onConflictDoUpdate({
      target: runners.id,
      set: { ...beat, startedAt: now, lastSeenAt: now },
    });
}

/** Refreshes last_seen_at and the active count; a no-op for an unknown runner (use upsertRunner at start). */
export async function heartbeatRunner(db: Db, input: { id: string; active: number }, now: number): Promise<void> {
  await db.update(runners).set({ active: input.active, lastSeenAt: now }).where(eq(runners.id, input.id));
}

/** Removes the registry row on graceful shutdown; a crashed runner's row just stops being seen. */
export async function removeRunner(db: Db, id: string): Promise<void> {
  await db.delete(runners).where(eq(runners.id, id));
}

export type RunnerRow = typeof runners.$inferSelect;

/** Runners seen since `since` (ms), most recently seen first. */
export async function listRunners(db: Db, since = 0): Promise<RunnerRow[]> {
  return db.select().from(runners).where(sql`${runners.lastSeenAt} >= ${since}`).orderBy(sql`${runners.lastSeenAt} DESC`);
}

/**
 * Removes the rows of runners not seen since `seenBefore` (crashed or scaled away). A runner that is in fact alive
 * writes its row again with its next beat (an upsert), so this never loses a live one for more than a tick.
 */
export async function deleteRunnersNotSeenSince(db: Db, seenBefore: number): Promise<number> {
  const gone = await db.delete(runners).where(lt(runners.lastSeenAt, seenBefore)).returning({ id: runners.id });
  return gone.length;
}
