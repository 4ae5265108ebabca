import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../db/client";
import { parseStoredEffects } from "../db/effects";
import { isDbBusy, isDbUnavailable } from "../db/errors";
import { recordSourceProbe } from "../db/queries/media";
import { recordVariationParams, type ClaimedVariation, type Ownership } from "../db/queries/variations";
import type { BlobClient } from "./blobs";
import type { RunnerConfig } from "./config";
import { DbCallError, retryDb } from "./db-retry";
import { bestDraw, drawProblem, keptReason, measure, redraw, sampleSource, thumbnailFile, type Draw } from "./draws";
import { encode, planEncode, takeEncodeSlot } from "./encode";
import { pictureMs, verifyOutput, type ZoomScaler } from "./ffmpeg";
import { finish } from "./finish";
import { asLocalError, type LocalError } from "./local-errors";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { fail, local, sourceFailed, stopped, type CacheRoom, type Held, type Phase, type TaskOutcome } from "./outcomes";
import { deriveParams } from "./params";
import { encodeSamples, keepEncodeSamples, sampleTimes } from "./samples";
import type { ProcessRegistry, StopReason } from "./processes";
import type { AcquiredSource, SourceCache } from "./sources";
import type { Thumbnails } from "./thumbnails";
import { FFMPEG_OUT, makeJobDir } from "./workdir";

// Re-exported: the runner and the tests import them from here, where a variation task is run.
export { bestDraw } from "./draws";
export type { TaskOutcome } from "./outcomes";

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
  /**
   * The disk filled up: gives back every cached source no task uses, in one synchronous step, and says whether the
   * variation is handed back uncounted — yes when the cache gave bytes back during this attempt (now, or a tick's
   * eviction that ran between the error and its outcome), a few times per source at most (a source the cache keeps
   * crowding out ends counted, not circling).
   */
  roomFromCache?: (task: Held) => CacheRoom;
  /** Resolves once a removal of the job's local files (its sweep) is no longer under way; never rejects. */
  jobFilesRemoved?: (jobId: string) => Promise<void>;
}

/** A task's identity in the runner's maps: the same variation may be claimed again (a new attempt) by the same runner. */
export const taskKey = (id: string, attempt: number) => `${id}:${attempt}`;

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
  /** Aborted when the task ends (or by a stop outside its encode): nothing it started may outlive it. */
  readonly signal = this.abort.signal;
  /** id + runner + attempt: what every compare-and-set of this attempt names. */
  readonly own: Ownership;
  private writtenProgress = 0;
  private writtenAt = 0;
  /** Every local output of this task (one per draw), removed when it ends. */
  private readonly files: string[] = [];
  /** A stop was asked for at any point (even one this task ignores because FFmpeg had finished): no re-draw. */
  stopAsked = false;
  /**
   * A shutdown or a lost lease was asked for at some point (a later stop is not recorded in stopReason): which one,
   * a lost lease over a shutdown (nothing may then be recorded).
   */
  leaveReason: "shutdown" | "lost" | null = null;
  get mustLeave(): boolean {
    return this.leaveReason !== null;
  }
  /**
   * This task met trouble of the runner's own machine (see keepEarlierAfterFailure, runner/encode.ts): its completion
   * is no all-clear.
   */
  hadLocalTrouble = false;
  /** Holds an encode slot for a re-draw between taking it and its FFmpeg starting (the phase is still "finishing"). */
  redrawSlot = false;
  /**
   * Waiting for an encode slot for a re-draw with this place in line, else null. Claims leave such a
   * slot to it: work in hand goes before new work, or a busy queue would starve the re-draw.
   */
  redrawPlace: number | null = null;
  /** The source cache's freedBytes when this attempt began: did the cache make room during it? (roomFromCache) */
  readonly cacheMark: number;

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
    this.cacheMark = ctx.sources.freedBytes;
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
    if (reason === "lost" || (reason === "shutdown" && !this.leaveReason)) this.leaveReason = reason;
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
    const out = join(dir, FFMPEG_OUT, `${c.id}.a${this.attempt}.part.mp4`);
    let source: AcquiredSource | null = null;
    const started = performance.now();
    const timings: Record<string, number> = {};
    log.info("claimed variation", { variation: c.id, job: c.jobId, source: c.sourceId, attempt: this.attempt });
    try {
      try {
        await this.ctx.jobFilesRemoved?.(c.jobId);
        await makeJobDir(dir);
        source = await this.ctx.sources.acquire({ sourceId: c.sourceId, jobId: c.jobId, key: c.sourceKey, ticket: this.own }, this.abort.signal);
      } catch (err) {
        return await sourceFailed(this.ctx, this, err, out);
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
      const times = sampleTimes(pictureMs(source.media));
      // The source's samples come out of this encode's decode of the source, unless this runner has them already.
      let samples = await encodeSamples(sampleSource(source)).catch(() => null);
      if (samples) this.files.push(samples.file);
      let seed = c.seed;
      let params = deriveParams(seed, effects);
      let plan = planEncode(this.ctx, params, source, out, times, samples);
      const mine = await retryDb(() => recordVariationParams(this.ctx.db, { ...this.own, params: { ...params, ...plan.geometry } }));
      if (!mine) {
        this.stopReason ??= "lost";
        return await stopped(this.ctx, this, null, out);
      }
      if (this.stopReason) return await stopped(this.ctx, this, null, out);

      const draws: Draw[] = [];
      let redrawReason: string | null = null;
      for (let k = 0; ; k++) {
        const file = k === 0 ? out : out.replace(/\.part\.mp4$/, `.r${k}.part.mp4`);
        if (k > 0) plan = planEncode(this.ctx, params, source, file, times, null);
        this.files.push(file);
        const encoded = await encode(this.ctx, this, plan, file, timings, draws.length > 0);
        if (encoded === "keep-earlier" || encoded === "keep-earlier-failed") {
          const how = encoded === "keep-earlier" ? "was stopped" : "failed";
          redrawReason = keptReason(`${redrawReason ?? "re-drawn"}; the re-draw ${how}`, draws, bestDraw(draws, config));
          break;
        }
        if (encoded !== null) return encoded;
        const v0 = performance.now();
        try {
          await verifyOutput(file, plan.expectedDurationMs, plan.expectedVideoMs, plan.expectedKeptMs);
        } catch (err) {
          // Reading the file hit this machine (too many open files, an I/O error): not the encode's fault.
          const trouble = asLocalError(err, "checking the output failed");
          if (trouble) return await local(this.ctx, this, trouble, file);
          if (draws.length === 0) return await fail(this.ctx, this, errorMessage(err), file);
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
        const draw = await measure(this.ctx, this, seed, { ...params, ...plan.geometry }, params, plan, file, source, k);
        timings.measure = (timings.measure ?? 0) + performance.now() - m0;
        draws.push(draw);
        const problem = drawProblem(config, draw, effects);
        if (!problem) break;
        // Bounded: at most MAX_REDRAWS per variation (the database holds the count across attempts); never after a
        // stop was asked for (a cancel that came while measuring lets this finished encode complete, as before).
        // Its encode slot went to the next claim when FFmpeg exited: a re-draw waits for one like a claim would.
        if (this.stopAsked || this.stopReason || k >= config.MAX_REDRAWS || !(await takeEncodeSlot(this.ctx, this))) {
          if (draws.length > 1) redrawReason = keptReason(redrawReason ?? problem, draws, bestDraw(draws, config));
          break;
        }
        const next = await redraw(this.ctx, this, problem, effects);
        if (next === "lost") {
          this.stopReason ??= "lost";
          return await stopped(this.ctx, this, null, file);
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
        if (this.stopReason) return await stopped(this.ctx, this, null, file);
      }
      const kept = bestDraw(draws, config);
      if (this.stopReason === "lost") return await stopped(this.ctx, this, null, kept.file);

      if (this.stopReason) return await stopped(this.ctx, this, null, kept.file);
      return await finish(this.ctx, this, kept, redrawReason, timings);
    } catch (err) {
      log.error("variation failed unexpectedly", { variation: c.id, error: errorMessage(err) });
      if (this.stopReason) return await stopped(this.ctx, this, null, out).catch(() => "lost" as const);
      // An unreachable (or erroring) database says nothing about the variation: failing it would throw finished
      // work away for good, with a database message as its reason. Drop it: the next successful round trip hands
      // it back as stranded.
      if (isDbUnavailable(err) || isDbBusy(err) || err instanceof DbCallError) return "lost";
      const trouble = asLocalError(err, "runner error");
      if (trouble) return await local(this.ctx, this, trouble, out).catch(() => "lost" as const);
      return await fail(this.ctx, this, `runner error: ${errorMessage(err)}`, out).catch(() => "lost" as const);
    } finally {
      // Whatever ended the task (a stop during the encode does not fire it): nothing it started, such as a
      // measurement's FFmpeg, may outlive it and write into a job directory being swept.
      this.abort.abort();
      source?.release();
      for (const f of new Set([out, ...this.files, ...this.files.map(thumbnailFile)])) await rm(f, { force: true }).catch(() => {});
    }
  }
}
