import type { HeartbeatResult, InHand } from "../db/queries/variations";
import type { StopReason } from "./processes";

/** What the cancel watch needs from a variation in hand (a VariationTask). */
export interface Watched {
  readonly id: string;
  readonly attempt: number;
  readonly jobId: string;
  readonly phase: string;
  readonly stopReason: StopReason | null;
  leaseExpiresAt: number;
  lastProgressAt: number;
  progressForHeartbeat(now: number): number | null;
  stop(reason: StopReason): void;
}

/**
 * Variations whose lease the next heartbeat extends: every one in hand through verify, upload AND the record
 * (a settle that outlived its lease could otherwise race a new owner), except those already thrown away as lost —
 * extending the lease of work the runner has dropped would keep others from taking it over.
 */
export function watchedOf<T extends Watched>(tasks: Iterable<T>): T[] {
  return [...tasks].filter((t) => t.phase !== "done" && t.stopReason !== "lost");
}

/** Everything in hand (id + attempt), for the round trip's stranded rule. */
export function inHandOf(tasks: Iterable<Watched>): InHand[] {
  return [...tasks].filter((t) => t.phase !== "done").map((t) => ({ id: t.id, attempt: t.attempt }));
}

/** The heartbeat payload: each watched variation with its progress when it is due (at most once per second). */
export function heartbeatPayload(watched: readonly Watched[], now: number): (InHand & { progress: number | null })[] {
  return watched.map((t) => ({ id: t.id, attempt: t.attempt, progress: t.progressForHeartbeat(now) }));
}

/**
 * Before the round trip: a lease we could not extend in time may already belong to another runner, so the work
 * stops (as "lost": nothing is recorded).
 */
export function stopExpired(tasks: Iterable<Watched>, now: number): void {
  for (const t of tasks) if (now > t.leaseExpiresAt) t.stop("lost");
}

/** The encode watchdog: an FFmpeg whose output time has not advanced for `stallMs` is stopped as stalled. */
export function stopStalled(tasks: Iterable<Watched>, now: number, stallMs: number): number {
  let n = 0;
  for (const t of tasks) {
    if (t.phase === "encode" && !t.stopReason && now - t.lastProgressAt > stallMs) {
      t.stop("stall");
      n++;
    }
  }
  return n;
}

/**
 * After the round trip: a watched variation whose (id, attempt) is missing from `owned` was taken over (or failed
 * by someone else) → stop it as lost; an owned one gets its new lease, and is stopped as cancelled if its job was
 * asked to cancel. Returns how many stops were requested, by reason.
 */
export function applyHeartbeat(
  watched: readonly Watched[],
  result: HeartbeatResult,
  leaseExpiresAt: number,
): { lost: number; cancel: number } {
  const owned = new Set(result.owned.map((o) => `${o.id}:${o.attempt}`));
  const cancel = new Set(result.cancelJobIds);
  const counts = { lost: 0, cancel: 0 };
  for (const t of watched) {
    if (!owned.has(`${t.id}:${t.attempt}`)) {
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
