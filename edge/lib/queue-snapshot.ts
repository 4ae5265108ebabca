import type { Db } from "../../db/client";
import { readQueueSnapshot, type QueueSnapshot, type QueueSnapshotSource } from "../../db/queries/jobs";

/**
 * How old the shared half of a queue estimate may be. Its read covers every user's pending work, so one per poll of
 * every user's open job page grew with the square of the users and slowed everyone's database; an estimate a second
 * or two behind is still the same estimate (each job's own work is read fresh with it: estimateQueue's `own`).
 */
export const QUEUE_SNAPSHOT_MAX_AGE_MS = 2000;

interface Kept {
  at: number;
  snapshot: QueueSnapshot;
}

/**
 * A snapshot source that reads at most once per QUEUE_SNAPSHOT_MAX_AGE_MS per database in this isolate (the key: the
 * database's URL). Only the resolved value is kept, never a promise: workerd does not let a request wait on I/O that
 * another request started, so requests that miss at the same moment each read (rare, and bounded by the isolates).
 */
export function sharedQueueSnapshots(read: QueueSnapshotSource = readQueueSnapshot) {
  const kept = new Map<string, Kept>();
  return (key: string): QueueSnapshotSource =>
    async (db: Db, now: number) => {
      const k = kept.get(key);
      if (k && Math.abs(now - k.at) < QUEUE_SNAPSHOT_MAX_AGE_MS) return k.snapshot;
      const snapshot = await read(db, now);
      // A handful of databases at most (one in production); the bound only keeps a test isolate tidy.
      if (kept.size >= 8) kept.clear();
      kept.set(key, { at: now, snapshot });
      return snapshot;
    };
}

/** This isolate's shared snapshots: `queueSnapshot(config.LIBSQL_URL)` is the source the edge's job reads pass. */
export const queueSnapshot = sharedQueueSnapshots();
