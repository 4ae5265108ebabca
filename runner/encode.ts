import { rm } from "node:fs/promises";
import { isAbortError } from "./abort";
import { leaseChild, type ChildLease } from "./child-env";
import type { RunnerConfig } from "./config";
import { delay } from "./delay";
import { buildEncodeArgs, neverRan, spawnFfmpeg, type EncodePlan, type FfmpegProcess, type ZoomScaler } from "./ffmpeg";
import { asLocalError, ffmpegLocalError, LocalError } from "./local-errors";
import { errorMessage } from "./log";
import { fail, local, stopped, transient, type Held, type OutcomeContext, type Phase, type TaskOutcome } from "./outcomes";
import type { EffectParams } from "./params";
import type { ProcessRegistry, StopReason } from "./processes";
import { sampleKeyframes, type EncodeSamples } from "./samples";
import type { AcquiredSource } from "./sources";

/** What an encode needs from the runner (a WorkContext has it all). */
export interface EncodeContext<T> extends OutcomeContext {
  config: Pick<RunnerConfig, "WORK_DIR" | "STALL_MS" | "FFMPEG_PATH">;
  processes: ProcessRegistry;
  /** Called when a task's FFmpeg is done (its encode slot is free while it verifies and uploads). */
  onEncodeSlotFree?: (task: T) => void;
  /** Whether an encode slot is free right now for this task's re-draw (which encodes again after its slot was given away). */
  mayEncode?: (task: T) => boolean;
}

/** The variation in hand being encoded: a VariationTask, whose state the encode moves on. */
export interface Encoding extends Held {
  readonly key: string;
  progress: number;
  lastProgressAt: number;
  phase: Phase;
  stopReason: StopReason | null;
  hadLocalTrouble: boolean;
  redrawSlot: boolean;
  redrawPlace: number | null;
  /** A stop was asked for at any point (even one the task ignores because FFmpeg had finished): no re-draw. */
  readonly stopAsked: boolean;
  /** A shutdown or a lost lease was asked for at some point (a later stop is not recorded in stopReason). */
  readonly mustLeave: boolean;
  /** Which of the two (a lost lease over a shutdown). */
  readonly leaveReason: "shutdown" | "lost" | null;
  readonly signal: AbortSignal;
}

/** How often a re-draw waiting for an encode slot looks again (slots free up when an FFmpeg exits). */
const REDRAW_SLOT_POLL_MS = 100;
/** Places in line for re-draws waiting for an encode slot (a counter: no two are ever equal). */
let redrawLine = 0;
const lastLine = (s: string) => s.trim().split("\n").filter(Boolean).pop() ?? "";
/** FFmpeg could not be started on this machine: not the video's fault (its reason names no path). */
const spawnTrouble = (err: NodeJS.ErrnoException) => new LocalError("ESPAWN", `encoding failed (${err.code ?? "spawn error"})`);

/** The encode of one draw: the runner's arguments, keyframes at the quality samples, and the source's samples. */
export function planEncode(
  ctx: { zoomScaler?: ZoomScaler },
  params: EffectParams,
  source: AcquiredSource,
  file: string,
  times: number[],
  samples: EncodeSamples | null,
): EncodePlan {
  return buildEncodeArgs({
    source: source.path,
    output: file,
    params,
    media: source.media,
    scaler: ctx.zoomScaler,
    // Keyframes where the measurement samples the output: one frame decoded per sample.
    keyframes: sampleKeyframes(times, params.speed),
    samples: samples ?? undefined,
  });
}

/**
 * FFmpeg for one draw. Null when it exited 0 and nothing stopped it; else how the task ended — except that a
 * re-draw (`earlier`: a verified draw is in hand) stopped by a cancel or the stall watchdog answers "keep-earlier",
 * and one whose FFmpeg failed "keep-earlier-failed": completed wins with the draw already made, as for a cancel
 * that comes while a first draw is measured.
 */
export async function encode<T extends Encoding>(
  ctx: EncodeContext<T>,
  task: T,
  plan: EncodePlan,
  file: string,
  timings: Record<string, number>,
  earlier = false,
): Promise<TaskOutcome | "keep-earlier" | "keep-earlier-failed" | null> {
  const { config, log } = ctx;
  const t0 = performance.now();
  task.progress = 0;
  let lastMs = -1;
  let proc: FfmpegProcess;
  // FFmpeg's uid (FFMPEG_USER): a wait only while every uid of a range is busy. A stop that comes meanwhile finds
  // no process to stop (it aborts the task's signal instead), so it is looked at here, before anything starts. A
  // re-draw's cancel is no stop reason (an earlier draw completes, see VariationTask.stop) but starts nothing either.
  let lease: ChildLease | null = null;
  try {
    lease = await leaseChild(task.signal, plan.writes);
  } catch (err) {
    if (!isAbortError(err)) {
      // Its output could not be made ready (runner/child-env.ts). Something standing at the name is another run's
      // doing, which must not pause this runner for everybody: a retry. Anything else (a full or read-only disk,
      // too many open files) is this machine's trouble, like a spawn failure: claims pause.
      task.redrawSlot = false;
      const blocked = ["EEXIST", "EISDIR", "ENOTEMPTY"].includes(String((err as { code?: unknown }).code));
      const trouble = blocked ? null : (asLocalError(err, "encoding failed") ?? new LocalError("EPERM", "encoding failed", errorMessage(err)));
      if (earlier && !task.mustLeave) return await keepEarlierAfterFailure(ctx, task, trouble, errorMessage(err), file);
      if (trouble) return await local(ctx, task, trouble, file);
      return await transient(ctx, task, "encoding failed: its output file could not be prepared", file);
    }
  }
  if (!lease || task.stopReason || (earlier && task.stopAsked)) {
    task.redrawSlot = false;
    await lease?.release();
    if (earlier && !task.mustLeave) return await keepEarlier(ctx, task, null, file);
    return await stopped(ctx, task, null, file);
  }
  try {
    proc = spawnFfmpeg(
      config.FFMPEG_PATH,
      plan.args,
      (ms) => {
        if (ms > lastMs) {
          lastMs = ms;
          task.lastProgressAt = Date.now();
        }
        task.progress = Math.min(99.9, Math.max(task.progress, (ms / plan.expectedDurationMs) * 100));
      },
      lease,
    );
  } catch (err) {
    // Node throws some spawn failures (ENOMEM, E2BIG) instead of emitting them: the same trouble as an emitted one.
    task.redrawSlot = false;
    await lease.release();
    const trouble = spawnTrouble(err as NodeJS.ErrnoException);
    if (earlier && !task.mustLeave) return await keepEarlierAfterFailure(ctx, task, trouble, errorMessage(err), file);
    return await local(ctx, task, trouble, file);
  }
  task.lastProgressAt = Date.now();
  ctx.processes.register(task.key, proc);
  task.phase = "encode";
  task.redrawSlot = false;
  log.info("ffmpeg started", { variation: task.id, attempt: task.attempt, pid: proc.pid });
  const exit = await proc.exited;
  // Before anything reads the output: whatever else FFmpeg's uid left running is killed (with a range of uids).
  await lease.release();
  const stage = ctx.processes.stopStage(task.key);
  ctx.processes.unregister(task.key);
  // Not when a shutdown or a lost lease came meanwhile (during the cancel's stop sequence): then it must leave.
  if (stage && earlier && !task.mustLeave && (task.stopReason === "cancel" || task.stopReason === "stall")) return await keepEarlier(ctx, task, stage, file);
  if (stage) return await stopped(ctx, task, stage, file);
  task.phase = "finishing";
  timings.encode = (timings.encode ?? 0) + performance.now() - t0;
  if (task.stopReason === "cancel" || task.stopReason === "stall") {
    // The stop raced with FFmpeg's own exit and no stage was sent: the encode finished, so it completes.
    log.info("stop requested after FFmpeg finished: completing anyway", { variation: task.id, reason: task.stopReason });
    task.stopReason = null;
  }
  if (exit.code !== 0) {
    const stderr = proc.stderrTail();
    // FFmpeg that never started (no process slot or memory, not executable) is this machine's trouble, like a full
    // disk: claims pause, so a runner that cannot start FFmpeg does not spend every queued variation's attempts.
    // Exit 126/127: setpriv could not start FFmpeg, or FFmpeg's binary or libraries are broken on this machine.
    const trouble = exit.spawnError
      ? spawnTrouble(exit.spawnError)
      : neverRan(exit.code)
        ? new LocalError("ESPAWN", "encoding failed", lastLine(stderr))
        : ffmpegLocalError(stderr, "encoding failed");
    if (earlier && !task.mustLeave) return await keepEarlierAfterFailure(ctx, task, trouble, `exit ${exit.code ?? exit.signal}: ${lastLine(stderr)}`, file);
    if (trouble) return await local(ctx, task, trouble, file);
    // Killed from outside (e.g. the kernel's OOM killer): worth another attempt elsewhere.
    if (exit.signal) return await transient(ctx, task, `ffmpeg was killed by ${exit.signal}`, file);
    const detail = lastLine(stderr);
    return await fail(ctx, task, `ffmpeg exited with code ${exit.code}${detail ? `: ${detail}` : ""}`, file);
  }
  log.info("ffmpeg finished", { variation: task.id, ms: Math.round(performance.now() - t0) });
  // A shutdown or a lost lease that came after FFmpeg's own exit (while its uid was released; perhaps after a cancel
  // that found the encode finished, which keeps its place as the stop reason) sent no stage: the task must leave
  // now, not verify and measure first (past Docker's stop budget, only to hand the work back).
  if (task.leaveReason) {
    task.stopReason = task.leaveReason;
    return await stopped(ctx, task, null, file);
  }
  // The encode slot is free from here: verify, measure and upload run beside the next encode instead of in front
  // of it (on a busy runner that moved the next claim from the next tick to now). Only on success: a failed
  // encode first records its local trouble (which pauses claims), then the task's end frees the slot.
  ctx.onEncodeSlotFree?.(task);
  return null;
}

/** A re-draw stopped by a cancel or the stall watchdog (`stage` null: before its FFmpeg started): the earlier draw completes. */
async function keepEarlier<T extends Encoding>(ctx: EncodeContext<T>, task: T, stage: string | null, file: string): Promise<"keep-earlier"> {
  ctx.log.info("re-draw stopped: completing with an earlier draw", { variation: task.id, reason: task.stopReason, stage: stage ?? "none" });
  task.stopReason = null;
  task.phase = "finishing";
  ctx.onEncodeSlotFree?.(task);
  await rm(file, { force: true }).catch(() => {});
  return "keep-earlier";
}

/**
 * A verified draw is in hand: a re-draw whose FFmpeg failed (its disk filled with two outputs on it, the OOM
 * killer, a filter the new seed's parameters broke, no process slot) leaves it, like a re-draw that fails
 * verification. Failing or requeueing here threw a good encode away. Local trouble still pauses claims, and the
 * completion that follows must not reset that pause (`hadLocalTrouble`).
 */
async function keepEarlierAfterFailure<T extends Encoding>(
  ctx: EncodeContext<T>,
  task: T,
  trouble: LocalError | null,
  detail: string,
  file: string,
): Promise<"keep-earlier-failed"> {
  if (trouble) {
    task.hadLocalTrouble = true;
    ctx.onLocalTrouble?.(trouble);
  }
  ctx.log.warn("re-draw failed: completing with an earlier draw", { variation: task.id, error: trouble?.message ?? detail });
  task.phase = "finishing";
  ctx.onEncodeSlotFree?.(task);
  await rm(file, { force: true }).catch(() => {});
  return "keep-earlier-failed";
}

/**
 * Waits until the runner has an encode slot free and takes it (checked and taken in one synchronous step, so two
 * re-draws or a claim cannot both take the last one). False when a stop was asked for meanwhile.
 */
export async function takeEncodeSlot<T extends Encoding>(ctx: EncodeContext<T>, task: T): Promise<boolean> {
  task.redrawPlace = ++redrawLine;
  try {
    for (;;) {
      if (task.stopAsked || task.stopReason) return false;
      if (ctx.mayEncode?.(task) ?? true) {
        task.redrawSlot = true;
        return true;
      }
      await delay(REDRAW_SLOT_POLL_MS, task.signal).catch(() => {});
    }
  } finally {
    task.redrawPlace = null;
  }
}
