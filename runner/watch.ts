import type { HeartbeatResult } from "../db/queries/variations";
import type { StopReason } from "./processes";

/** What the cancel watch needs from a variation in hand (a VariationTask). */
export interface Watched {
  readonly id: string;
  readonly jobId: string;
  readonly phase: string;
  leaseExpiresAt: number;
  progressForHeartbeat(now: number): number | null;
  stop(reason: StopReason): void;
}

/** Variations whose lease the next heartbeat extends: all in hand except those already recording their result. */
export function watchedOf<T extends Watched>(tasks: Iterable<T>): T[] {
  return [...tasks].filter((t) => t.phase !== "settle" && t.phase !== "done");
}

/** The heartbeat payload: each watched variation with its progress when it is due (at most once per second). */
export function heartbeatPayload(watched: readonly Watched[], now: number): { id: string; progress: number | null }[] {
  return watched.map((t) => ({ id: t.id, progress: t.progressForHeartbeat(now) }));
}

/**
 * Before the round trip: a lease we could not extend in time may already belong to another runner, so the work
 * stops (as "lost": nothing is recorded).
 */
export function stopExpired(tasks: Iterable<Watched>, now: number): void {
  for (const t of tasks) if (now > t.leaseExpiresAt) t.stop("lost");
}

/**
 * After the round trip: a watched variation missing from `owned` was taken over (or failed by someone else) →
 * stop it as lost; an owned one gets its new lease, and is stopped as cancelled if its job was asked to cancel.
 * Returns how many stops were requested, by reason.
 */
export function applyHeartbeat(
  watched: readonly Watched[],
  result: HeartbeatResult,
  leaseExpiresAt: number,
): { lost: number; cancel: number } {
  const owned = new Set(result.owned);
  const cancel = new Set(result.cancelJobIds);
  const counts = { lost: 0, cancel: 0 };
  for (const t of watched) {
    if (!owned.has(t.id)) {
      t.stop("lost");
      counts.lost++;
      continue;
    }
    t.leaseExpiresAt = leaseExpiresAt;
    if (cancel.has(t.jobId)) {
      t.stop("cancel");
      counts.cancel++;
    }
  }
  return counts;
}
