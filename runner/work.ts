import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../db/client";
import { isDbUnavailable } from "../db/errors";
import { recordSourceProbe, setJobThumbnail } from "../db/queries/media";
import {
  cancelVariation,
  failSourceVariations,
  failVariation,
  finishVariation,
  recordVariationParams,
  releaseVariation,
  requeueVariation,
  type ClaimedVariation,
  type StopStage,
} from "../db/queries/variations";
import { BlobError, type BlobClient } from "./blobs";
import type { RunnerConfig } from "./config";
import { buildEncodeArgs, makeThumbnail, NotAVideoError, spawnFfmpeg, verifyOutput } from "./ffmpeg";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { deriveParams } from "./params";
import type { ProcessRegistry, StopReason } from "./processes";
import type { AcquiredSource, SourceCache } from "./sources";

export interface WorkContext {
  config: RunnerConfig;
  db: Db;
  blobs: BlobClient;
  sources: SourceCache;
  processes: ProcessRegistry;
  metrics: RunnerMetrics;
  log: Logger;
  thumbnails: Thumbnails;
  /** Called when a task's FFmpeg is done (its encode slot is free while it verifies and uploads). */
  onEncodeSlotFree?: (task: VariationTask) => void;
  /** The edge failed transiently (unreachable, 5xx): the runner should hold off claiming for a while. */
  onEdgeTrouble?: () => void;
  /** The edge answered a blob call fine again. */
  onEdgeOk?: () => void;
}

/** How a variation left this runner's hands. */
export type TaskOutcome = "completed" | "failed" | "cancelled" | "released" | "requeued" | "lost";

type Phase = "source" | "prepare" | "encode" | "finishing" | "settle" | "done";

export const outputKey = (jobId: string, variationId: string) => `outputs/${jobId}/${variationId}.mp4`;

/**
 * Retries a database call while the database is unreachable (a finished upload is worth recording). The default
 * rides out a database restart: 12 attempts, backoff 250 ms doubling to at most 2 s, ~20 s in all.
 */
async function retryDb<T>(fn: () => Promise<T>, attempts = 12): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!isDbUnavailable(err) || i >= attempts - 1) throw err;
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * 2 ** i)));
    }
  }
}

const lastLine = (s: string) => s.trim().split("\n").filter(Boolean).pop() ?? "";

/**
 * One claimed variation, from source to recorded output: source (shared download + probe) → params → FFmpeg →
 * verify → upload → finish. `stop()` may come at any point; what it does depends on the phase (abort the download,
 * run the stop sequence, or — for a cancel once FFmpeg has exited on its own — nothing: an encode that finished
 * before any stop stage completes normally).
 */
export class VariationTask {
  readonly id: string;
  readonly jobId: string;
  progress = 0;
  phase: Phase = "source";
  stopReason: StopReason | null = null;
  /** Local lease view, refreshed by each successful heartbeat; past it another runner may own the variation. */
  leaseExpiresAt: number;
  readonly done: Promise<TaskOutcome>;
  private readonly abort = new AbortController();
  private writtenProgress = 0;
  private partialPath: string | null = null;
  private writtenAt = 0;

  constructor(
    private readonly ctx: WorkContext,
    readonly claim: ClaimedVariation,
  ) {
    this.id = claim.id;
    this.jobId = claim.jobId;
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
    if (this.stopReason || this.phase === "settle" || this.phase === "done") return;
    const { log, processes } = this.ctx;
    if (this.phase === "finishing" && reason === "cancel") {
      // Completed wins: FFmpeg exited before any stop stage, so this output is verified, uploaded and recorded.
      log.info("cancel requested after FFmpeg finished: completing anyway", { variation: this.id });
      return;
    }
    this.stopReason = reason;
    log.info("stopping variation", { variation: this.id, job: this.jobId, reason, phase: this.phase });
    if (this.phase === "encode") void processes.stop(this.id, reason);
    else this.abort.abort();
  }

  private async run(): Promise<TaskOutcome> {
    const { config, log } = this.ctx;
    const c = this.claim;
    const dir = join(config.WORK_DIR, c.jobId);
    const out = join(dir, `${c.id}.part.mp4`);
    this.partialPath = out;
    let source: AcquiredSource | null = null;
    const started = performance.now();
    const timings: Record<string, number> = {};
    log.info("claimed variation", { variation: c.id, job: c.jobId, source: c.sourceId, attempt: c.attempts });
    try {
      await mkdir(dir, { recursive: true });
      try {
        source = await this.ctx.sources.acquire({ sourceId: c.sourceId, jobId: c.jobId, key: c.sourceKey }, this.abort.signal);
      } catch (err) {
        if (this.stopReason) return await this.stopped(null);
        if (err instanceof NotAVideoError) return await this.failSource(err.message);
        if (err instanceof BlobError && err.status === 404) return await this.failSource("source file is missing from storage");
        if (err instanceof BlobError && err.transient) return await this.edgeDown(`source download failed: ${err.message}`);
        return await this.transient(`source download failed: ${errorMessage(err)}`);
      }
      this.ctx.onEdgeOk?.();
      if (source.fresh && c.sourceDurationMs === null) {
        const m = source.media;
        await recordSourceProbe(this.ctx.db, c.sourceId, m).catch((err) =>
          log.warn("could not record source probe", { source: c.sourceId, error: errorMessage(err) }),
        );
      }
      timings.source = performance.now() - started;
      this.phase = "prepare";
      if (c.sourcePosition === 1 && !c.jobThumbnailKey) this.ctx.thumbnails.ensure(c);

      const params = deriveParams(c.seed, config.EFFECT_EXTRAS);
      const plan = buildEncodeArgs({ source: source.path, output: out, params, media: source.media });
      const owned = await retryDb(() =>
        recordVariationParams(this.ctx.db, { variationId: c.id, runnerId: config.RUNNER_ID, params: { ...params, ...plan.geometry } }),
      );
      if (!owned) {
        this.stopReason ??= "lost";
        return await this.stopped(null);
      }
      if (this.stopReason) return await this.stopped(null);

      const t0 = performance.now();
      timings.prepare = t0 - started - timings.source!;
      const proc = spawnFfmpeg(config.FFMPEG_PATH, plan.args, (ms) => {
        this.progress = Math.min(99.9, Math.max(this.progress, (ms / plan.expectedDurationMs) * 100));
      });
      this.ctx.processes.register(c.id, proc);
      this.phase = "encode";
      log.info("ffmpeg started", { variation: c.id, pid: proc.pid });
      const exit = await proc.exited;
      const stage = this.ctx.processes.stopStage(c.id);
      this.ctx.processes.unregister(c.id);
      if (stage) return await this.stopped(stage);
      this.phase = "finishing";
      timings.encode = performance.now() - t0;
      this.ctx.onEncodeSlotFree?.(this);
      if (this.stopReason === "cancel") {
        // The cancel raced with FFmpeg's own exit and no stage was sent: completed wins.
        log.info("cancel requested after FFmpeg finished: completing anyway", { variation: c.id });
        this.stopReason = null;
      }
      if (exit.code !== 0) {
        const detail = lastLine(proc.stderrTail());
        // Killed from outside (e.g. the kernel's OOM killer): worth another attempt elsewhere.
        if (exit.signal) return await this.transient(`ffmpeg was killed by ${exit.signal}`);
        return await this.fail(`ffmpeg exited with code ${exit.code}${detail ? `: ${detail}` : ""}`);
      }
      log.info("ffmpeg finished", { variation: c.id, ms: Math.round(timings.encode) });
      if (this.stopReason === "lost") return await this.stopped(null);

      const v0 = performance.now();
      try {
        await verifyOutput(config.FFPROBE_PATH, out, plan.expectedDurationMs);
      } catch (err) {
        return await this.fail(errorMessage(err));
      }
      timings.verify = performance.now() - v0;

      if (this.stopReason) return await this.stopped(null);
      const key = outputKey(c.jobId, c.id);
      let size: number;
      const u0 = performance.now();
      try {
        ({ size } = await this.ctx.blobs.upload(key, out, this.abort.signal));
      } catch (err) {
        await this.ctx.blobs.delete(key).catch(() => {});
        if (this.stopReason) return await this.stopped(null);
        if (err instanceof BlobError && !err.transient) return await this.fail(`upload failed: ${err.message}`);
        this.ctx.onEdgeTrouble?.();
        return await this.transient(`upload failed: ${errorMessage(err)}`);
      }

      timings.upload = performance.now() - u0;
      this.phase = "settle";
      const s0 = performance.now();
      const recorded = await retryDb(() =>
        finishVariation(this.ctx.db, { variationId: c.id, runnerId: config.RUNNER_ID, outputKey: key, outputSize: size, now: Date.now() }),
      );
      if (!recorded) {
        // Another runner owns it now (our lease expired): our object must not survive.
        log.warn("completion rejected: lease lost; deleting the upload", { variation: c.id, key });
        await this.ctx.blobs.delete(key).catch((err) => log.warn("could not delete rejected upload", { key, error: errorMessage(err) }));
        return "lost";
      }
      timings.settle = performance.now() - s0;
      const ms = Object.fromEntries(Object.entries(timings).map(([k, v]) => [`${k}_ms`, Math.round(v)]));
      log.info("variation completed", { variation: c.id, job: c.jobId, bytes: size, ...ms });
      return "completed";
    } catch (err) {
      log.error("variation failed unexpectedly", { variation: c.id, error: errorMessage(err) });
      if (this.stopReason) return await this.stopped(null).catch(() => "lost" as const);
      // An unreachable database says nothing about the variation: failing it (once the database is back) would
      // throw the work away for good. Leave it running; its lease expires and it is claimed again.
      if (isDbUnavailable(err)) return "lost";
      return await this.fail(`runner error: ${errorMessage(err)}`).catch(() => "lost" as const);
    } finally {
      source?.release();
      await rm(out, { force: true }).catch(() => {});
    }
  }

  /** After a stop: delete the partial file first, then record what the stop meant. */
  private async stopped(stage: StopStage | null): Promise<TaskOutcome> {
    const { db, config, log } = this.ctx;
    if (this.partialPath) await rm(this.partialPath, { force: true }).catch(() => {});
    const base = { variationId: this.id, runnerId: config.RUNNER_ID, now: Date.now() };
    const reason = this.stopReason ?? "shutdown";
    if (reason === "lost") {
      log.info("variation lost to another runner; dropped", { variation: this.id });
      return "lost";
    }
    if (reason === "cancel") {
      const ok = await retryDb(() => cancelVariation(db, { ...base, stopStage: stage }));
      log.info("variation cancelled", { variation: this.id, job: this.jobId, stage: stage ?? "none", recorded: ok });
      return ok ? "cancelled" : "lost";
    }
    const ok = await retryDb(() => releaseVariation(db, { ...base, stopStage: stage }), 2);
    log.info("variation handed back", { variation: this.id, stage: stage ?? "none", recorded: ok });
    return ok ? "released" : "lost";
  }

  private async fail(error: string): Promise<TaskOutcome> {
    const { db, config, log } = this.ctx;
    log.warn("variation failed", { variation: this.id, job: this.jobId, error });
    const ok = await retryDb(() => failVariation(db, { variationId: this.id, runnerId: config.RUNNER_ID, error, now: Date.now() }));
    return ok ? "failed" : "lost";
  }

  private async failSource(error: string): Promise<TaskOutcome> {
    const { db, log } = this.ctx;
    log.warn("source is not usable: failing all its variations", { source: this.claim.sourceId, job: this.jobId, error });
    await retryDb(() => failSourceVariations(db, { sourceId: this.claim.sourceId, error, now: Date.now() }));
    return "failed";
  }

  /**
   * The edge could not serve the source (unreachable, 5xx): nothing is known to be wrong with the variation, and
   * nothing was spent on it yet, so it goes back to the queue without counting an attempt — an edge restart must
   * not burn through the attempt cap of every queued variation. The runner backs off claiming meanwhile.
   */
  private async edgeDown(error: string): Promise<TaskOutcome> {
    const { db, config, log } = this.ctx;
    this.ctx.onEdgeTrouble?.();
    const ok = await retryDb(() => releaseVariation(db, { variationId: this.id, runnerId: config.RUNNER_ID, now: Date.now() }));
    log.warn("edge unavailable: variation handed back", { variation: this.id, error });
    return ok ? "released" : "lost";
  }

  private async transient(error: string): Promise<TaskOutcome> {
    const { db, config, log } = this.ctx;
    const status = await retryDb(() => requeueVariation(db, { variationId: this.id, runnerId: config.RUNNER_ID, error, now: Date.now() }));
    log.warn("variation hit a transient error", { variation: this.id, error, now: status ?? "not owned" });
    return status === "failed" ? "failed" : status === null ? "lost" : "requeued";
  }
}

/**
 * The job's poster frame, from its first source, once per job per runner; best effort (a failure is logged and
 * the job simply has no thumbnail). Not part of the stop sequence: it is one short FFmpeg call with a timeout.
 */
export class Thumbnails {
  private started = new Set<string>();
  private inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly ctx: () => WorkContext) {}

  ensure(claim: ClaimedVariation): void {
    if (this.started.has(claim.jobId)) return;
    this.started.add(claim.jobId);
    const p = this.make(claim)
      .catch((err) => this.ctx().log.warn("thumbnail failed", { job: claim.jobId, error: errorMessage(err) }))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async make(claim: ClaimedVariation): Promise<void> {
    const { config, sources, blobs, db, log } = this.ctx();
    const src = await sources.acquire({ sourceId: claim.sourceId, jobId: claim.jobId, key: claim.sourceKey }, this.abort.signal);
    const file = join(config.WORK_DIR, claim.jobId, "thumb.jpg");
    try {
      await makeThumbnail(config.FFMPEG_PATH, src.path, file, src.media, this.abort.signal);
      const key = `thumbs/${claim.jobId}.jpg`;
      await blobs.upload(key, file, this.abort.signal);
      if (await setJobThumbnail(db, claim.jobId, key, Date.now())) log.info("thumbnail stored", { job: claim.jobId, key });
    } finally {
      src.release();
      await rm(file, { force: true }).catch(() => {});
    }
  }

  /** Shutdown: abort what is running and wait for it to settle. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.inFlight]);
  }

  forget(jobId: string): void {
    this.started.delete(jobId);
  }
}
