import { rm } from "node:fs/promises";
import type { Db } from "../db/client";
import { NO_SUCH_OBJECT } from "../db/keys";
import {
  cancelVariation,
  failSourceVariations,
  failVariation,
  releaseVariation,
  requeueVariation,
  type ClaimedVariation,
  type Ownership,
  type StopStage,
} from "../db/queries/variations";
import { BlobError, isTokenRefused } from "./blobs";
import type { RunnerConfig } from "./config";
import { retryDb } from "./db-retry";
import { NotAVideoError } from "./ffmpeg";
import { asLocalError, scrubPaths, type LocalError } from "./local-errors";
import { errorMessage, type Logger } from "./log";
import type { StopReason } from "./processes";
import { SourceOverLimitError } from "./sources";

/** How a variation left this runner's hands. */
export type TaskOutcome = "completed" | "failed" | "cancelled" | "released" | "requeued" | "lost";

/** Where a variation task is in its life; what a stop does depends on it (VariationTask.stop). */
export type Phase = "source" | "prepare" | "encode" | "finishing" | "settle" | "done";

/** What settling a variation needs from the runner (a WorkContext has it all). */
export interface OutcomeContext {
  config: Pick<RunnerConfig, "WORK_DIR" | "STALL_MS">;
  db: Db;
  log: Logger;
  /** The edge failed transiently (unreachable, 5xx): the runner should hold off claiming for a while. */
  onEdgeTrouble?: () => void;
  /** The runner's own machine failed (disk, permissions): it should hold off claiming for a while. */
  onLocalTrouble?: (err: LocalError) => void;
  /** May this edge failure be handed back without counting an attempt? (WorkContext.mayRefund) */
  mayRefund?: (sourceId: string) => boolean;
  /** The disk filled up: give back the runner's idle cached sources; was the cache to blame? (WorkContext.roomFromCache) */
  roomFromCache?: (task: Held) => CacheRoom;
}

/** What giving back the idle cached sources after a full disk did (decided synchronously). */
export interface CacheRoom {
  /** The runner's own cache gave bytes back during this attempt: hand the variation back uncounted. */
  refund: boolean;
  /** The removal of the given-back files (never rejects). */
  removed: Promise<void>;
}

/** The variation in hand (one attempt) being settled: a VariationTask. */
export interface Held {
  readonly id: string;
  readonly jobId: string;
  readonly attempt: number;
  readonly own: Ownership;
  readonly claim: Pick<ClaimedVariation, "sourceId">;
  readonly stopReason: StopReason | null;
  /** The source cache's freedBytes when this attempt began (runner/sources.ts); unknown: only a new eviction counts. */
  readonly cacheMark?: number;
}

/** Which outcome a failed source download (or probe) means: the video's fault, the edge's, or this machine's. */
export async function sourceFailed(ctx: OutcomeContext, task: Held, err: unknown, out: string): Promise<TaskOutcome> {
  const c = task.claim;
  if (task.stopReason) return await stopped(ctx, task, null, out);
  if (isTokenRefused(err)) return await tokenRefused(ctx, task, `source download failed: ${err.message}`);
  if (err instanceof NotAVideoError || err instanceof SourceOverLimitError) return await failSource(ctx, task, err.message);
  if (err instanceof BlobError && err.status === 404 && err.code === NO_SUCH_OBJECT) {
    return await failSource(ctx, task, "source file is missing from storage");
  }
  // Any other 404 is a route the edge does not have (a wrong EDGE_URL): this runner's setup, not the video.
  if (err instanceof BlobError && err.status === 404 && (ctx.mayRefund?.(c.sourceId) ?? true)) {
    return await edgeDown(ctx, task, `source download failed: ${err.message}`);
  }
  const trouble = asLocalError(err, "source download failed");
  if (trouble) return await local(ctx, task, trouble);
  if (err instanceof BlobError && err.transient && (ctx.mayRefund?.(c.sourceId) ?? true)) {
    return await edgeDown(ctx, task, `source download failed: ${err.message}`);
  }
  return await transient(ctx, task, `source download failed: ${errorMessage(err)}`);
}

/** After a stop: delete the partial file first, then record what the stop meant. */
export async function stopped(ctx: OutcomeContext, task: Held, stage: StopStage | null, partial: string): Promise<TaskOutcome> {
  const { db, log } = ctx;
  await rm(partial, { force: true }).catch(() => {});
  const base = { ...task.own, now: Date.now() };
  const reason = task.stopReason ?? "shutdown";
  if (reason === "lost") {
    log.info("variation lost to another runner; dropped", { variation: task.id, attempt: task.attempt });
    return "lost";
  }
  if (reason === "stall") {
    const seconds = Math.round(ctx.config.STALL_MS / 1000);
    return await transient(ctx, task, `encode stalled (no progress for ${seconds} s)`, partial);
  }
  if (reason === "cancel") {
    const ok = await retryDb(() => cancelVariation(db, { ...base, stopStage: stage }));
    log.info("variation cancelled", { variation: task.id, job: task.jobId, stage: stage ?? "none", recorded: ok });
    return ok ? "cancelled" : "lost";
  }
  // Shutdown (or pause): a short retry only — the process is about to exit, and the start-up (or another
  // runner's claim after the lease) hands back whatever this could not record.
  const ok = await retryDb(() => releaseVariation(db, { ...base, stopStage: stage }), { attempts: 2 });
  log.info("variation handed back", { variation: task.id, stage: stage ?? "none", recorded: ok });
  return ok ? "released" : "lost";
}

export async function fail(ctx: OutcomeContext, task: Held, error: string, partial?: string): Promise<TaskOutcome> {
  const { db, log } = ctx;
  if (partial) await rm(partial, { force: true }).catch(() => {});
  const reason = scrubPaths(error, [ctx.config.WORK_DIR]);
  log.warn("variation failed", { variation: task.id, job: task.jobId, error });
  const ok = await retryDb(() => failVariation(db, { ...task.own, error: reason, now: Date.now() }));
  return ok ? "failed" : "lost";
}

export async function failSource(ctx: OutcomeContext, task: Held, error: string): Promise<TaskOutcome> {
  const { db, log } = ctx;
  log.warn("source is not usable: failing all its variations", { source: task.claim.sourceId, job: task.jobId, error });
  await retryDb(() => failSourceVariations(db, { sourceId: task.claim.sourceId, error: scrubPaths(error, [ctx.config.WORK_DIR]), now: Date.now() }));
  return "failed";
}

/**
 * The edge could not serve the source (unreachable, 5xx): nothing is known to be wrong with the variation, and
 * nothing was spent on it yet, so it goes back to the queue without counting an attempt — an edge restart must
 * not burn through the attempt cap of every queued variation. The runner backs off claiming meanwhile.
 */
export async function edgeDown(ctx: OutcomeContext, task: Held, error: string): Promise<TaskOutcome> {
  ctx.onEdgeTrouble?.();
  const outcome = await handBack(ctx, task);
  ctx.log.warn("edge unavailable: variation handed back", { variation: task.id, error });
  return outcome;
}

/** Back to the queue without counting an attempt: "released", or "lost" when this attempt no longer holds it. */
async function handBack(ctx: OutcomeContext, task: Held, partial?: string): Promise<TaskOutcome> {
  if (partial) await rm(partial, { force: true }).catch(() => {});
  return (await retryDb(() => releaseVariation(ctx.db, { ...task.own, now: Date.now() }))) ? "released" : "lost";
}

/**
 * The edge refused this runner's token (RUNNER_TOKEN rotated on the edge first, or mistyped on this host): nothing
 * is wrong with the variation and a runner with the right token can do it, so it goes back to the queue without
 * counting an attempt — counted, one misconfigured runner failed the whole queue within seconds. The runner claims
 * nothing more until a check of the edge accepts the token again (runner/edge-check.ts), so this happens at most once
 * per variation in hand when the token is rotated; /healthz answers 503 meanwhile.
 */
export async function tokenRefused(ctx: OutcomeContext, task: Held, error: string, partial?: string): Promise<TaskOutcome> {
  ctx.onEdgeTrouble?.();
  const outcome = await handBack(ctx, task, partial);
  ctx.log.error("the edge refused this runner's RUNNER_TOKEN: variation handed back", { variation: task.id, error });
  return outcome;
}

/**
 * This runner's own machine failed (disk full, permissions): unlike an edge outage, that is a cost of this
 * attempt — counted, so a source bigger than every runner's disk ends as failed instead of circling forever. Not
 * when the runner has no FFmpeg user left (it claims nothing more), nor when a full disk was made room on by giving
 * back the runner's idle cached sources (a few times per source at most: WorkContext.roomFromCache).
 */
export async function local(ctx: OutcomeContext, task: Held, err: LocalError, partial?: string): Promise<TaskOutcome> {
  if (err.runnerGone) {
    // This runner can run no FFmpeg any more and claims nothing more (loop.ts freeSlots): no variation can circle
    // through it, so counting an attempt would only fail videos near the cap for one broken host.
    const outcome = await handBack(ctx, task, partial);
    ctx.log.warn("this runner can run no FFmpeg: variation handed back", { variation: task.id, error: err.message });
    return outcome;
  }
  // A disk full of sources this runner keeps for other jobs' later variations is the runner's own doing, not the
  // job's: once they are given back the variation is handed back uncounted, and claims go on (the room is there
  // now). Counted, one runner that was never idle failed a source its cache crowded out after the attempts cap.
  // Decided synchronously (roomFromCache never awaits), like the pause below.
  const room = err.diskFull ? ctx.roomFromCache?.(task) : undefined;
  if (room?.refund) {
    await room.removed;
    const outcome = await handBack(ctx, task, partial);
    ctx.log.warn("disk full: gave back cached sources not in use; variation handed back", { variation: task.id, error: err.message });
    return outcome;
  }
  // Claims pause before anything is awaited: a tick in between would claim onto the same failing disk.
  ctx.onLocalTrouble?.(err);
  if (partial) await rm(partial, { force: true }).catch(() => {});
  return transient(ctx, task, err.message);
}

export async function transient(ctx: OutcomeContext, task: Held, error: string, partial?: string): Promise<TaskOutcome> {
  const { db, log } = ctx;
  if (partial) await rm(partial, { force: true }).catch(() => {});
  const status = await retryDb(() => requeueVariation(db, { ...task.own, error: scrubPaths(error, [ctx.config.WORK_DIR]), now: Date.now() }));
  log.warn("variation hit a retryable error", { variation: task.id, attempt: task.attempt, error, now: status ?? "not owned" });
  return status === "failed" ? "failed" : status === null ? "lost" : "requeued";
}
