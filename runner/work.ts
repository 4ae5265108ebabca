import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../db/client";
import { parseStoredEffects } from "../db/effects";
import { isDbBusy, isDbUnavailable } from "../db/errors";
import type { JobEffects } from "../db/effects";
import { NO_SUCH_OBJECT, outputKey, variationThumbnailKey } from "../db/keys";
import { recordSourceProbe } from "../db/queries/media";
import {
  cancelVariation,
  failSourceVariations,
  failVariation,
  finishVariation,
  listSiblingFingerprints,
  lowerDistinctness,
  recordVariationParams,
  isSeedTaken,
  redrawVariation,
  releaseVariation,
  requeueVariation,
  type ClaimedVariation,
  type Ownership,
  type StopStage,
} from "../db/queries/variations";
import { BlobError, CLEANUP_TIMEOUT_MS, isTokenRefused, type BlobClient } from "./blobs";
import type { RunnerConfig } from "./config";
import { DbCallError, retryDb } from "./db-retry";
import { buildEncodeArgs, neverRan, NotAVideoError, spawnFfmpeg, verifyOutput, type EncodePlan, type FfmpegProcess, type ZoomScaler } from "./ffmpeg";
import { asLocalError, ffmpegLocalError, LocalError, scrubPaths } from "./local-errors";
import { delay } from "./delay";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { deriveParams, type EffectParams } from "./params";
import { closestDistance, measureQuality, type QualityFigures } from "./quality";
import { encodeSamples, keepEncodeSamples, sampleKeyframes, sampleTimes, type EncodeSamples, type SampledSource } from "./samples";
import type { ProcessRegistry, StopReason } from "./processes";
import { SourceOverLimitError, type AcquiredSource, type SourceCache } from "./sources";
import type { Thumbnails } from "./thumbnails";

export interface WorkContext {
  config: RunnerConfig;
  /** How a zoom scales back (detected once at start-up; "scale" until then). */
  zoomScaler?: ZoomScaler;
  /** This runner's own marked directory under WORK_DIR. */
  workDir: string;
  db: Db;
  blobs: BlobClient;
  sources: SourceCache;
  processes: ProcessRegistry;
  metrics: RunnerMetrics;
  log: Logger;
  thumbnails: Thumbnails;
  /** Called when a task's FFmpeg is done (its encode slot is free while it verifies and uploads). */
  onEncodeSlotFree?: (task: VariationTask) => void;
  /** Whether an encode slot is free right now for this task's re-draw (which encodes again after its slot was given away). */
  mayEncode?: (task: VariationTask) => boolean;
  /** The edge failed transiently (unreachable, 5xx): the runner should hold off claiming for a while. */
  onEdgeTrouble?: () => void;
  /** The edge answered a blob call fine again. */
  onEdgeOk?: () => void;
  /** The runner's own machine failed (disk, permissions): it should hold off claiming for a while. */
  onLocalTrouble?: (err: LocalError) => void;
  /**
   * May this edge failure be handed back without counting an attempt? Yes for the first few per source on this
   * runner (an edge restart must not burn attempts); after that the attempt counts, so a source the edge can never
   * serve ends as failed instead of circling forever.
   */
  mayRefund?: (sourceId: string) => boolean;
}

/** How a variation left this runner's hands. */
export type TaskOutcome = "completed" | "failed" | "cancelled" | "released" | "requeued" | "lost";

type Phase = "source" | "prepare" | "encode" | "finishing" | "settle" | "done";

/** A task's identity in the runner's maps: the same variation may be claimed again (a new attempt) by the same runner. */
export const taskKey = (id: string, attempt: number) => `${id}:${attempt}`;

/** How often a re-draw waiting for an encode slot looks again (slots free up when an FFmpeg exits). */
const REDRAW_SLOT_POLL_MS = 100;
/** Places in line for re-draws waiting for an encode slot (a counter: no two are ever equal). */
let redrawLine = 0;
const lastLine = (s: string) => s.trim().split("\n").filter(Boolean).pop() ?? "";
/** FFmpeg could not be started on this machine: not the video's fault (its reason names no path). */
const spawnTrouble = (err: NodeJS.ErrnoException) => new LocalError("ESPAWN", `encoding failed (${err.code ?? "spawn error"})`);

/** One encode of a variation: the first draw, or a re-draw with a new seed (runner/quality.ts decides). */
interface Draw {
  seed: number;
  /** The parameters as recorded on the row (with the geometry). */
  recorded: Record<string, unknown>;
  file: string;
  thumbnail: string;
  quality: QualityFigures | null;
  /** Distance to the closest sibling completed when it was measured (null: none, or not measured). */
  distinct: number | null;
  k: number;
}

const thumbnailFile = (file: string) => file.replace(/\.mp4$/, ".jpg");
const sampleSource = (s: AcquiredSource): SampledSource => ({ path: s.path, durationMs: s.media.durationMs, fps: s.media.fps });

/** The reason recorded when no draw passed: the last problem, the seeds tried and the one kept. */
const keptReason = (problem: string, draws: readonly Draw[], kept: Draw) =>
  `${problem}; re-draw limit reached: kept the best of ${draws.length} draws (seeds ${draws.map((d) => d.seed).join(", ")}; kept ${kept.seed})`;

/**
 * The draw to keep when none passed both floors: the smallest shortfall below the floors (relative to each floor),
 * then the higher SSIM, then the earlier draw. A draw that passes has no shortfall, so it always wins.
 */
export function bestDraw<D extends { quality: { ssim: number } | null; distinct: number | null; k: number }>(
  draws: readonly D[],
  floors: { QUALITY_SSIM_FLOOR: number; QUALITY_DISTINCT_FLOOR: number },
): D {
  const shortfall = (d: D) =>
    !d.quality
      ? Infinity
      : Math.max(0, floors.QUALITY_SSIM_FLOOR - d.quality.ssim) / (floors.QUALITY_SSIM_FLOOR || 1) +
        (d.distinct === null ? 0 : Math.max(0, floors.QUALITY_DISTINCT_FLOOR - d.distinct) / (floors.QUALITY_DISTINCT_FLOOR || 1));
  return [...draws].sort((a, b) => shortfall(a) - shortfall(b) || (b.quality?.ssim ?? 0) - (a.quality?.ssim ?? 0) || a.k - b.k)[0]!;
}

/**
 * One claimed variation (one attempt), from source to recorded output: source (shared download + probe) → params
 * → FFmpeg → verify → upload → finish. `stop()` may come at any point; what it does depends on the phase (abort
 * the download, run the stop sequence, or — for a cancel once FFmpeg has exited on its own — nothing: an encode
 * that finished before any stop stage completes normally).
 */
export class VariationTask {
  readonly id: string;
  readonly jobId: string;
  readonly attempt: number;
  readonly key: string;
  progress = 0;
  phase: Phase = "source";
  stopReason: StopReason | null = null;
  /** Local lease view, refreshed by each successful heartbeat; past it another runner may own the variation. */
  leaseExpiresAt: number;
  /** Last time FFmpeg's output time advanced (or it started): the stall watchdog's clock. */
  lastProgressAt = Date.now();
  readonly done: Promise<TaskOutcome>;
  private readonly abort = new AbortController();
  private readonly own: Ownership;
  private writtenProgress = 0;
  private writtenAt = 0;
  /** Every local output of this task (one per draw), removed when it ends. */
  private readonly files: string[] = [];
  /** A stop was asked for at any point (even one this task ignores because FFmpeg had finished): no re-draw. */
  private stopAsked = false;
  /** A shutdown or a lost lease was asked for at some point (a later stop is not recorded in stopReason). */
  private mustLeave = false;
  /** This task met trouble of the runner's own machine (see keepEarlierAfterFailure): its completion is no all-clear. */
  hadLocalTrouble = false;
  /** Holds an encode slot for a re-draw between taking it and its FFmpeg starting (the phase is still "finishing"). */
  redrawSlot = false;
  /**
   * Waiting for an encode slot for a re-draw with this place in line, else null. Claims leave such a
   * slot to it: work in hand goes before new work, or a busy queue would starve the re-draw.
   */
  redrawPlace: number | null = null;

  constructor(
    private readonly ctx: WorkContext,
    readonly claim: ClaimedVariation,
  ) {
    this.id = claim.id;
    this.jobId = claim.jobId;
    this.attempt = claim.attempt;
    this.key = taskKey(claim.id, claim.attempt);
    this.own = { variationId: claim.id, runnerId: ctx.config.RUNNER_ID, attempt: claim.attempt };
    this.leaseExpiresAt = claim.leaseExpiresAt;
    this.done = this.run().then(
      (outcome) => {
        this.phase = "done";
        ctx.metrics.finished.inc({ status: outcome });
        return outcome;
      },
      (err) => {
        this.phase = "done";
        ctx.log.error("variation task crashed", { variation: this.id, error: errorMessage(err) });
        ctx.metrics.finished.inc({ status: "lost" });
        return "lost" as const;
      },
    );
  }

  /** Progress to write with the next heartbeat: only when it changed, and at most once per second. */
  progressForHeartbeat(now: number): number | null {
    const p = Math.round(this.progress * 10) / 10;
    if (p === this.writtenProgress || now - this.writtenAt < 1000) return null;
    this.writtenProgress = p;
    this.writtenAt = now;
    return p;
  }

  stop(reason: StopReason): void {
    this.stopAsked = true;
    if (reason === "shutdown" || reason === "lost") this.mustLeave = true;
    if (this.stopReason || this.phase === "settle" || this.phase === "done") return;
    const { log, processes } = this.ctx;
    if (this.phase === "finishing" && reason === "cancel") {
      // Completed wins: FFmpeg exited before any stop stage, so this output is verified, uploaded and recorded.
      log.info("cancel requested after FFmpeg finished: completing anyway", { variation: this.id });
      return;
    }
    if (this.phase === "finishing" && reason === "stall") return;
    this.stopReason = reason;
    log.info("stopping variation", { variation: this.id, job: this.jobId, reason, phase: this.phase });
    if (this.phase === "encode") void processes.stop(this.key, reason);
    else this.abort.abort();
  }

  private async run(): Promise<TaskOutcome> {
    const { config, log, workDir } = this.ctx;
    const c = this.claim;
    const dir = join(workDir, c.jobId);
    // The attempt is in the name: an older attempt of the same variation winding down never removes this one's file.
    const out = join(dir, `${c.id}.a${this.attempt}.part.mp4`);
    let source: AcquiredSource | null = null;
    const started = performance.now();
    const timings: Record<string, number> = {};
    log.info("claimed variation", { variation: c.id, job: c.jobId, source: c.sourceId, attempt: this.attempt });
    try {
      try {
        await mkdir(dir, { recursive: true });
        source = await this.ctx.sources.acquire({ sourceId: c.sourceId, jobId: c.jobId, key: c.sourceKey, ticket: this.own }, this.abort.signal);
      } catch (err) {
        if (this.stopReason) return await this.stopped(null, out);
        if (isTokenRefused(err)) return await this.tokenRefused(`source download failed: ${err.message}`);
        if (err instanceof NotAVideoError || err instanceof SourceOverLimitError) return await this.failSource(err.message);
        if (err instanceof BlobError && err.status === 404 && err.code === NO_SUCH_OBJECT) {
          return await this.failSource("source file is missing from storage");
        }
        // Any other 404 is a route the edge does not have (a wrong EDGE_URL): this runner's setup, not the video.
        if (err instanceof BlobError && err.status === 404 && (this.ctx.mayRefund?.(c.sourceId) ?? true)) {
          return await this.edgeDown(`source download failed: ${err.message}`);
        }
        const local = asLocalError(err, "source download failed");
        if (local) return await this.local(local);
        if (err instanceof BlobError && err.transient && (this.ctx.mayRefund?.(c.sourceId) ?? true)) {
          return await this.edgeDown(`source download failed: ${err.message}`);
        }
        return await this.transient(`source download failed: ${errorMessage(err)}`);
      }
      // Only a real download says the edge is fine again: a cached source asked it nothing.
      if (source.fresh) this.ctx.onEdgeOk?.();
      if (source.fresh && c.sourceDurationMs === null) {
        await recordSourceProbe(this.ctx.db, c.sourceId, source.media).catch((err) =>
          log.warn("could not record source probe", { source: c.sourceId, error: errorMessage(err) }),
        );
      }
      timings.source = performance.now() - started;
      this.phase = "prepare";
      if (c.sourcePosition === 1 && !c.jobThumbnailKey) this.ctx.thumbnails.ensure(c);

      // From the job's effects (returned by the claim), never from this runner's settings: every runner alike.
      const effects = parseStoredEffects(c.jobEffects);
      // Where quality is sampled: fixed fractions of the source's duration.
      const times = sampleTimes(source.media.durationMs);
      // The source's samples come out of this encode's decode of the source, unless this runner has them already.
      let samples = await encodeSamples(sampleSource(source)).catch(() => null);
      if (samples) this.files.push(samples.file);
      let seed = c.seed;
      let params = deriveParams(seed, effects);
      let plan = this.plan(params, source, out, times, samples);
      const mine = await retryDb(() => recordVariationParams(this.ctx.db, { ...this.own, params: { ...params, ...plan.geometry } }));
      if (!mine) {
        this.stopReason ??= "lost";
        return await this.stopped(null, out);
      }
      if (this.stopReason) return await this.stopped(null, out);

      const draws: Draw[] = [];
      let redrawReason: string | null = null;
      for (let k = 0; ; k++) {
        const file = k === 0 ? out : out.replace(/\.part\.mp4$/, `.r${k}.part.mp4`);
        if (k > 0) plan = this.plan(params, source, file, times, null);
        this.files.push(file);
        const encoded = await this.encode(plan, file, timings, draws.length > 0);
        if (encoded === "keep-earlier" || encoded === "keep-earlier-failed") {
          const how = encoded === "keep-earlier" ? "was stopped" : "failed";
          redrawReason = keptReason(`${redrawReason ?? "re-drawn"}; the re-draw ${how}`, draws, bestDraw(draws, config));
          break;
        }
        if (encoded !== null) return encoded;
        const v0 = performance.now();
        try {
          await verifyOutput(file, plan.expectedDurationMs);
        } catch (err) {
          // Reading the file hit this machine (too many open files, an I/O error): not the encode's fault.
          const local = asLocalError(err, "checking the output failed");
          if (local) return await this.local(local, file);
          if (draws.length === 0) return await this.fail(errorMessage(err), file);
          // A re-draw that did not verify: an earlier draw did, so that one is kept.
          log.warn("re-draw output failed verification: keeping an earlier draw", { variation: c.id, error: errorMessage(err) });
          redrawReason = `${redrawReason ?? "re-drawn"}; the re-draw failed verification, kept an earlier draw`;
          break;
        }
        timings.verify = (timings.verify ?? 0) + performance.now() - v0;
        if (samples) {
          const made = samples;
          samples = null;
          const kept = await keepEncodeSamples(made, { ...sampleSource(source), width: source.media.width, height: source.media.height }).catch(
            (err: unknown) => (log.warn("source samples from the encode not kept", { variation: c.id, error: errorMessage(err) }), false),
          );
          log.info(kept ? "source samples kept from the encode" : "source samples incomplete: the measurement seeks for them", { variation: c.id, source: c.sourceId });
        }
        const m0 = performance.now();
        const draw = await this.measure(seed, { ...params, ...plan.geometry }, params, plan, file, source, k);
        timings.measure = (timings.measure ?? 0) + performance.now() - m0;
        draws.push(draw);
        const problem = this.problem(draw);
        if (!problem) break;
        // Bounded: at most MAX_REDRAWS per variation (the database holds the count across attempts); never after a
        // stop was asked for (a cancel that came while measuring lets this finished encode complete, as before).
        // Its encode slot went to the next claim when FFmpeg exited: a re-draw waits for one like a claim would.
        if (this.stopAsked || this.stopReason || k >= config.MAX_REDRAWS || !(await this.takeEncodeSlot())) {
          if (draws.length > 1) redrawReason = keptReason(redrawReason ?? problem, draws, bestDraw(draws, config));
          break;
        }
        const next = await this.redraw(problem, effects);
        if (next === "lost") {
          this.stopReason ??= "lost";
          return await this.stopped(null, file);
        }
        if (next === "bound") {
          this.redrawSlot = false;
          redrawReason = keptReason(problem, draws, bestDraw(draws, config));
          break;
        }
        if (this.stopAsked && !this.stopReason) {
          // A cancel came during the re-draw's record: completed wins with the best draw so far (the finish records
          // that draw's seed and parameters over the re-drawn ones).
          this.redrawSlot = false;
          redrawReason = keptReason(problem, draws, bestDraw(draws, config));
          break;
        }
        redrawReason = problem;
        ({ seed, params } = next);
        log.info("variation re-drawn", { variation: c.id, reason: problem, seed, draw: k + 1 });
        if (this.stopReason) return await this.stopped(null, file);
      }
      const kept = bestDraw(draws, config);
      if (this.stopReason === "lost") return await this.stopped(null, kept.file);

      if (this.stopReason) return await this.stopped(null, kept.file);
      const key = outputKey(c.jobId, c.id, this.attempt);
      let size: number;
      const u0 = performance.now();
      try {
        ({ size } = await this.ctx.blobs.upload(key, kept.file, this.abort.signal, this.own));
      } catch (err) {
        // Nothing records this attempt's key yet, and no other attempt ever writes it: safe to remove. Bounded: the
        // hand-back of a stop (a shutdown has 7 s) comes after it.
        await this.ctx.blobs.delete(key, this.own, CLEANUP_TIMEOUT_MS).catch(() => {});
        if (this.stopReason) return await this.stopped(null, kept.file);
        const local = asLocalError(err, "upload failed");
        if (local) return await this.local(local, kept.file);
        if (isTokenRefused(err)) return await this.tokenRefused(`upload failed: ${err.message}`, kept.file);
        // 403: the edge no longer sees this attempt holding the lease. Not the edge's trouble and not the video's:
        // the requeue's ownership check settles whether the lease was lost (nothing recorded) or only ran late.
        if (err instanceof BlobError && err.status === 403) return await this.transient(`upload failed: ${err.message}`, kept.file);
        if (err instanceof BlobError && !err.transient) return await this.fail(`upload failed: ${err.message}`, kept.file);
        this.ctx.onEdgeTrouble?.();
        return await this.transient(`upload failed: ${errorMessage(err)}`, kept.file);
      }

      this.ctx.onEdgeOk?.();
      const thumbnailKey = await this.uploadThumbnail(kept);
      timings.upload = performance.now() - u0;
      this.phase = "settle";
      const s0 = performance.now();
      // Keep trying while the lease may still be ours (heartbeats renew it if the database answers them).
      const recorded = await retryDb(
        () => finishVariation(this.ctx.db, {
            ...this.own,
            outputKey: key,
            outputSize: size,
            now: Date.now(),
            quality: {
              seed: kept.seed,
              params: kept.recorded,
              ssim: kept.quality?.ssim ?? null,
              psnr: kept.quality?.psnr ?? null,
              distinct: kept.distinct,
              fingerprint: kept.quality?.fingerprint ?? null,
              thumbnailKey,
              redrawReason,
            },
          }),
        { until: this.leaseExpiresAt },
      );
      if (!recorded) {
        // Another attempt owns the variation (our lease expired). The key is this attempt's own, so deleting it
        // can never remove the object the owner records; the edge also refuses to delete a recorded key.
        log.warn("completion rejected: lease lost; deleting the upload", { variation: c.id, key });
        for (const k of [key, ...(thumbnailKey ? [thumbnailKey] : [])]) {
          await this.ctx.blobs
            .delete(k, this.own, CLEANUP_TIMEOUT_MS)
            .catch((err) => log.warn("could not delete rejected upload", { key: k, error: errorMessage(err) }));
        }
        return "lost";
      }
      timings.settle = performance.now() - s0;
      if (kept.quality) await this.compareSiblings(kept.quality.fingerprint);
      const ms = Object.fromEntries(Object.entries(timings).map(([k, v]) => [`${k}_ms`, Math.round(v)]));
      log.info("variation completed", { variation: c.id, job: c.jobId, bytes: size, ...ms });
      return "completed";
    } catch (err) {
      log.error("variation failed unexpectedly", { variation: c.id, error: errorMessage(err) });
      if (this.stopReason) return await this.stopped(null, out).catch(() => "lost" as const);
      // An unreachable (or erroring) database says nothing about the variation: failing it would throw finished
      // work away for good, with a database message as its reason. Drop it: the next successful round trip hands
      // it back as stranded.
      if (isDbUnavailable(err) || isDbBusy(err) || err instanceof DbCallError) return "lost";
      const local = asLocalError(err, "runner error");
      if (local) return await this.local(local, out).catch(() => "lost" as const);
      return await this.fail(`runner error: ${errorMessage(err)}`, out).catch(() => "lost" as const);
    } finally {
      // Whatever ended the task (a stop during the encode does not fire it): nothing it started, such as a
      // measurement's FFmpeg, may outlive it and write into a job directory being swept.
      this.abort.abort();
      source?.release();
      for (const f of new Set([out, ...this.files, ...this.files.map(thumbnailFile)])) await rm(f, { force: true }).catch(() => {});
    }
  }

  /** The encode of one draw: the runner's arguments, keyframes at the quality samples, and the source's samples. */
  private plan(params: EffectParams, source: AcquiredSource, file: string, times: number[], samples: EncodeSamples | null): EncodePlan {
    return buildEncodeArgs({
      source: source.path,
      output: file,
      params,
      media: source.media,
      scaler: this.ctx.zoomScaler,
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
  private async encode(
    plan: EncodePlan,
    file: string,
    timings: Record<string, number>,
    earlier = false,
  ): Promise<TaskOutcome | "keep-earlier" | "keep-earlier-failed" | null> {
    const { config, log } = this.ctx;
    const t0 = performance.now();
    this.progress = 0;
    let lastMs = -1;
    let proc: FfmpegProcess;
    try {
      proc = spawnFfmpeg(config.FFMPEG_PATH, plan.args, (ms) => {
        if (ms > lastMs) {
          lastMs = ms;
          this.lastProgressAt = Date.now();
        }
        this.progress = Math.min(99.9, Math.max(this.progress, (ms / plan.expectedDurationMs) * 100));
      }, config.SETPRIV_PATH);
    } catch (err) {
      // Node throws some spawn failures (ENOMEM, E2BIG) instead of emitting them: the same trouble as an emitted one.
      this.redrawSlot = false;
      const local = spawnTrouble(err as NodeJS.ErrnoException);
      if (earlier && !this.mustLeave) return await this.keepEarlierAfterFailure(local, errorMessage(err), file);
      return await this.local(local, file);
    }
    this.lastProgressAt = Date.now();
    this.ctx.processes.register(this.key, proc);
    this.phase = "encode";
    this.redrawSlot = false;
    log.info("ffmpeg started", { variation: this.id, attempt: this.attempt, pid: proc.pid });
    const exit = await proc.exited;
    const stage = this.ctx.processes.stopStage(this.key);
    this.ctx.processes.unregister(this.key);
    // Not when a shutdown or a lost lease came meanwhile (during the cancel's stop sequence): then it must leave.
    if (stage && earlier && !this.mustLeave && (this.stopReason === "cancel" || this.stopReason === "stall")) {
      log.info("re-draw stopped: completing with an earlier draw", { variation: this.id, reason: this.stopReason, stage });
      this.stopReason = null;
      this.phase = "finishing";
      this.ctx.onEncodeSlotFree?.(this);
      await rm(file, { force: true }).catch(() => {});
      return "keep-earlier";
    }
    if (stage) return await this.stopped(stage, file);
    this.phase = "finishing";
    timings.encode = (timings.encode ?? 0) + performance.now() - t0;
    if (this.stopReason === "cancel" || this.stopReason === "stall") {
      // The stop raced with FFmpeg's own exit and no stage was sent: the encode finished, so it completes.
      log.info("stop requested after FFmpeg finished: completing anyway", { variation: this.id, reason: this.stopReason });
      this.stopReason = null;
    }
    if (exit.code !== 0) {
      const stderr = proc.stderrTail();
      // FFmpeg that never started (no process slot or memory, not executable) is this machine's trouble, like a full
      // disk: claims pause, so a runner that cannot start FFmpeg does not spend every queued variation's attempts.
      // Exit 126/127: setpriv could not start FFmpeg, or FFmpeg's binary or libraries are broken on this machine.
      const local = exit.spawnError
        ? spawnTrouble(exit.spawnError)
        : neverRan(exit.code)
          ? new LocalError("ESPAWN", "encoding failed", lastLine(stderr))
          : ffmpegLocalError(stderr, "encoding failed");
      if (earlier && !this.mustLeave) return await this.keepEarlierAfterFailure(local, `exit ${exit.code ?? exit.signal}: ${lastLine(stderr)}`, file);
      if (local) return await this.local(local, file);
      // Killed from outside (e.g. the kernel's OOM killer): worth another attempt elsewhere.
      if (exit.signal) return await this.transient(`ffmpeg was killed by ${exit.signal}`, file);
      const detail = lastLine(stderr);
      return await this.fail(`ffmpeg exited with code ${exit.code}${detail ? `: ${detail}` : ""}`, file);
    }
    log.info("ffmpeg finished", { variation: this.id, ms: Math.round(performance.now() - t0) });
    if (this.stopReason === "lost") return await this.stopped(null, file);
    // The encode slot is free from here: verify, measure and upload run beside the next encode instead of in front
    // of it (on a busy runner that moved the next claim from the next tick to now). Only on success: a failed
    // encode first records its local trouble (which pauses claims), then the task's end frees the slot.
    this.ctx.onEncodeSlotFree?.(this);
    return null;
  }

  /**
   * A verified draw is in hand: a re-draw whose FFmpeg failed (its disk filled with two outputs on it, the OOM
   * killer, a filter the new seed's parameters broke, no process slot) leaves it, like a re-draw that fails
   * verification. Failing or requeueing here threw a good encode away. Local trouble still pauses claims, and the
   * completion that follows must not reset that pause (`hadLocalTrouble`).
   */
  private async keepEarlierAfterFailure(local: LocalError | null, detail: string, file: string): Promise<"keep-earlier-failed"> {
    if (local) {
      this.hadLocalTrouble = true;
      this.ctx.onLocalTrouble?.(local);
    }
    this.ctx.log.warn("re-draw failed: completing with an earlier draw", { variation: this.id, error: local?.message ?? detail });
    this.phase = "finishing";
    this.ctx.onEncodeSlotFree?.(this);
    await rm(file, { force: true }).catch(() => {});
    return "keep-earlier-failed";
  }

  /**
   * Quality of one draw and its distinctness from the siblings completed so far (best effort: a failed measurement
   * leaves the figures null and never fails the variation).
   */
  private async measure(
    seed: number,
    recorded: Record<string, unknown>,
    params: EffectParams,
    plan: EncodePlan,
    file: string,
    source: AcquiredSource,
    k: number,
  ): Promise<Draw> {
    const { config, db, log } = this.ctx;
    const draw: Draw = { seed, recorded, file, quality: null, distinct: null, thumbnail: thumbnailFile(file), k };
    try {
      draw.quality = await measureQuality(
        config.FFMPEG_PATH,
        { source: sampleSource(source), speed: params.speed, output: file, thumbnail: draw.thumbnail, params, geometry: plan.geometry },
        this.abort.signal,
      );
      // A database that cannot list the siblings now costs the figure, not the encode (compareLateSiblings and
      // later siblings still fill it in).
      const siblings = await retryDb(() => listSiblingFingerprints(db, { sourceId: this.claim.sourceId, exceptId: this.id }), { attempts: 3 }).catch(
        (err: unknown) => (log.warn("could not read sibling fingerprints", { variation: this.id, error: errorMessage(err) }), null),
      );
      draw.distinct = siblings ? closestDistance(draw.quality.fingerprint, siblings.map((x) => x.fingerprint)) : null;
      log.info("variation measured", { variation: this.id, seed, ssim: draw.quality.ssim, psnr: draw.quality.psnr, distinct: draw.distinct });
    } catch (err) {
      if (!this.stopReason) log.warn("quality measurement failed", { variation: this.id, error: errorMessage(err) });
      draw.quality = null;
    }
    return draw;
  }

  /** Why this draw should be re-drawn (for the user, no paths), or null when it passes both floors. */
  private problem(d: Draw): string | null {
    const { QUALITY_SSIM_FLOOR: ssimFloor, QUALITY_DISTINCT_FLOOR: distinctFloor } = this.ctx.config;
    if (!d.quality) return null;
    if (d.quality.ssim < ssimFloor) return `SSIM ${d.quality.ssim.toFixed(3)} below the floor ${ssimFloor}`;
    if (d.distinct !== null && d.distinct < distinctFloor) {
      return `distinctness ${d.distinct.toFixed(2)} % below the floor ${distinctFloor} % (too close to a sibling)`;
    }
    return null;
  }

  /**
   * A new seed for this variation, recorded with its parameters (CAS on ownership and the re-draw bound). Seeds are
   * unique in the job: a clash with a sibling's seed throws in the database, and another seed is drawn.
   */
  private async redraw(reason: string, effects: JobEffects): Promise<{ seed: number; params: EffectParams } | "lost" | "bound"> {
    const { config, db } = this.ctx;
    for (let tries = 0; tries < 5; tries++) {
      const seed = (crypto.getRandomValues(new Uint32Array(1))[0]! >>> 1) || 1;
      const params = deriveParams(seed, effects);
      try {
        const r = await retryDb(() =>
          redrawVariation(db, { ...this.own, seed, params: { ...params }, reason, maxRedraws: config.MAX_REDRAWS }),
        );
        return r === "redrawn" ? { seed, params } : r;
      } catch (err) {
        // The seed is a sibling's (1 in ~2^31 per draw): draw another.
        if (!isSeedTaken(err)) throw err;
      }
    }
    throw new Error("could not draw a seed new to the job");
  }

  /**
   * Waits until the runner has an encode slot free and takes it (checked and taken in one synchronous step, so two
   * re-draws or a claim cannot both take the last one). False when a stop was asked for meanwhile.
   */
  private async takeEncodeSlot(): Promise<boolean> {
    this.redrawPlace = ++redrawLine;
    try {
      for (;;) {
        if (this.stopAsked || this.stopReason) return false;
        if (this.ctx.mayEncode?.(this) ?? true) {
          this.redrawSlot = true;
          return true;
        }
        await delay(REDRAW_SLOT_POLL_MS, this.abort.signal).catch(() => {});
      }
    } finally {
      this.redrawPlace = null;
    }
  }

  /** The kept draw's still, to this attempt's thumbnail key (best effort: null when it could not be stored). */
  private async uploadThumbnail(kept: Draw): Promise<string | null> {
    if (!kept.quality) return null;
    const key = variationThumbnailKey(this.jobId, this.id, this.attempt);
    try {
      await this.ctx.blobs.upload(key, kept.thumbnail, this.abort.signal, this.own);
      return key;
    } catch (err) {
      this.ctx.log.warn("variation thumbnail not stored", { variation: this.id, error: errorMessage(err) });
      return null;
    }
  }

  /**
   * After the completion is recorded, distinctness is made symmetric: every completed sibling (those compared
   * before, whose own figure may still be null or larger, and those that completed while this one was measured)
   * gets its figure lowered to its distance from this one, and this one's to the closest (whichever of two
   * simultaneous siblings records second sees the first). Best effort: a failure leaves figures that later
   * siblings lower further.
   */
  private async compareSiblings(fingerprint: string): Promise<void> {
    const { db, log } = this.ctx;
    try {
      const siblings = await listSiblingFingerprints(db, { sourceId: this.claim.sourceId, exceptId: this.id });
      const figures = siblings.flatMap((x) => {
        const d = closestDistance(fingerprint, [x.fingerprint]);
        return d === null ? [] : [{ variationId: x.id, distinct: d }, { variationId: this.id, distinct: d }];
      });
      await lowerDistinctness(db, figures);
    } catch (err) {
      log.warn("could not compare with siblings", { variation: this.id, error: errorMessage(err) });
    }
  }

  /** After a stop: delete the partial file first, then record what the stop meant. */
  private async stopped(stage: StopStage | null, partial: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    await rm(partial, { force: true }).catch(() => {});
    const base = { ...this.own, now: Date.now() };
    const reason = this.stopReason ?? "shutdown";
    if (reason === "lost") {
      log.info("variation lost to another runner; dropped", { variation: this.id, attempt: this.attempt });
      return "lost";
    }
    if (reason === "stall") {
      const seconds = Math.round(this.ctx.config.STALL_MS / 1000);
      return await this.transient(`encode stalled (no progress for ${seconds} s)`, partial);
    }
    if (reason === "cancel") {
      const ok = await retryDb(() => cancelVariation(db, { ...base, stopStage: stage }));
      log.info("variation cancelled", { variation: this.id, job: this.jobId, stage: stage ?? "none", recorded: ok });
      return ok ? "cancelled" : "lost";
    }
    // Shutdown (or pause): a short retry only — the process is about to exit, and the start-up (or another
    // runner's claim after the lease) hands back whatever this could not record.
    const ok = await retryDb(() => releaseVariation(db, { ...base, stopStage: stage }), { attempts: 2 });
    log.info("variation handed back", { variation: this.id, stage: stage ?? "none", recorded: ok });
    return ok ? "released" : "lost";
  }

  private async fail(error: string, partial?: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    if (partial) await rm(partial, { force: true }).catch(() => {});
    const reason = scrubPaths(error, [this.ctx.config.WORK_DIR]);
    log.warn("variation failed", { variation: this.id, job: this.jobId, error });
    const ok = await retryDb(() => failVariation(db, { ...this.own, error: reason, now: Date.now() }));
    return ok ? "failed" : "lost";
  }

  private async failSource(error: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    log.warn("source is not usable: failing all its variations", { source: this.claim.sourceId, job: this.jobId, error });
    await retryDb(() => failSourceVariations(db, { sourceId: this.claim.sourceId, error: scrubPaths(error, [this.ctx.config.WORK_DIR]), now: Date.now() }));
    return "failed";
  }

  /**
   * The edge could not serve the source (unreachable, 5xx): nothing is known to be wrong with the variation, and
   * nothing was spent on it yet, so it goes back to the queue without counting an attempt — an edge restart must
   * not burn through the attempt cap of every queued variation. The runner backs off claiming meanwhile.
   */
  private async edgeDown(error: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    this.ctx.onEdgeTrouble?.();
    const ok = await retryDb(() => releaseVariation(db, { ...this.own, now: Date.now() }));
    log.warn("edge unavailable: variation handed back", { variation: this.id, error });
    return ok ? "released" : "lost";
  }

  /**
   * The edge refused this runner's token (RUNNER_TOKEN rotated on the edge first, or mistyped on this host): nothing
   * is wrong with the variation and a runner with the right token can do it, so it goes back to the queue without
   * counting an attempt — counted, one misconfigured runner failed the whole queue within seconds. The runner claims
   * nothing more until a check of the edge accepts the token again (runner/loop.ts), so this happens at most once
   * per variation in hand when the token is rotated; /healthz answers 503 meanwhile.
   */
  private async tokenRefused(error: string, partial?: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    this.ctx.onEdgeTrouble?.();
    if (partial) await rm(partial, { force: true }).catch(() => {});
    const ok = await retryDb(() => releaseVariation(db, { ...this.own, now: Date.now() }));
    log.error("the edge refused this runner's RUNNER_TOKEN: variation handed back", { variation: this.id, error });
    return ok ? "released" : "lost";
  }

  /**
   * This runner's own machine failed (disk full, permissions): unlike an edge outage, that is a cost of this
   * attempt — counted, so a source bigger than every runner's disk ends as failed instead of circling forever.
   */
  private async local(err: LocalError, partial?: string): Promise<TaskOutcome> {
    // Claims pause before anything is awaited: a tick in between would claim onto the same failing disk.
    this.ctx.onLocalTrouble?.(err);
    if (partial) await rm(partial, { force: true }).catch(() => {});
    return this.transient(err.message);
  }

  private async transient(error: string, partial?: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    if (partial) await rm(partial, { force: true }).catch(() => {});
    const status = await retryDb(() => requeueVariation(db, { ...this.own, error: scrubPaths(error, [this.ctx.config.WORK_DIR]), now: Date.now() }));
    log.warn("variation hit a retryable error", { variation: this.id, attempt: this.attempt, error, now: status ?? "not owned" });
    return status === "failed" ? "failed" : status === null ? "lost" : "requeued";
  }
}
