import { mkdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Db } from "../db/client";
import { removeRunner, upsertRunner, type RunnerBeat } from "../db/queries/runners";
import { recoverRunnerVariations, releaseVariation, runnerRoundTrip, type ClaimedVariation } from "../db/queries/variations";
import type { BlobClient } from "./blobs";
import type { RunnerConfig } from "./config";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { ProcessRegistry } from "./processes";
import { SourceCache } from "./sources";
import { sweepJobOutputs, sweepWorkDir } from "./sweep";
import { ClaimGate } from "./claim";
import { applyHeartbeat, heartbeatPayload, stopExpired, watchedOf } from "./watch";
import { Thumbnails, VariationTask, type TaskOutcome, type WorkContext } from "./work";

export interface RunnerDeps {
  config: RunnerConfig;
  db: Db;
  blobs: BlobClient;
  metrics: RunnerMetrics;
  log: Logger;
  version: string;
  /** Source cache budget in bytes (default 4 GiB). */
  sourceCacheBytes?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * The runner's main loop. One tick = one database round trip: heartbeat for the variations in hand (lease,
 * progress, cancel watch), claims for free slots, registry beat. Ticks run every WATCH_MS while busy and every
 * POLL_MS while idle, and right away when a slot frees up while the queue still had work.
 */
export class Runner {
  readonly processes: ProcessRegistry;
  readonly sources: SourceCache;
  readonly thumbnails: Thumbnails;
  private readonly ctx: WorkContext;
  private readonly tasks = new Map<string, VariationTask>();
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private tickAgain = false;
  private stopping = false;
  private shutdownPromise: Promise<void> | null = null;
  private lastDbOkAt = 0;
  private lastTickStart = 0;
  private lastDbErrorLogAt = 0;
  /** Local files may exist for jobs no longer in hand (cleared by the idle sweep). */
  private workDirDirty = false;
  private readonly background = new Set<Promise<unknown>>();
  private readonly gate: ClaimGate;

  constructor(private readonly deps: RunnerDeps) {
    const { config, log, metrics, blobs } = deps;
    this.processes = new ProcessRegistry({ graceMs: config.STOP_GRACE_MS, log, metrics });
    this.sources = new SourceCache({
      workDir: config.WORK_DIR,
      blobs,
      ffmpeg: config.FFMPEG_PATH,
      ffprobe: config.FFPROBE_PATH,
      log,
      maxBytes: deps.sourceCacheBytes,
    });
    this.thumbnails = new Thumbnails(() => this.ctx);
    this.gate = new ClaimGate(config.CONCURRENCY);
    this.ctx = {
      config,
      db: deps.db,
      blobs,
      sources: this.sources,
      processes: this.processes,
      metrics,
      log,
      thumbnails: this.thumbnails,
      onEncodeSlotFree: () => this.onSlotFree(),
      onEdgeTrouble: () => {
        const ms = this.gate.edgeTrouble(Date.now());
        log.warn("edge trouble: pausing claims", { ms });
      },
      onEdgeOk: () => this.gate.edgeOk(),
    };
    metrics.info.set(1, { runner_id: config.RUNNER_ID, version: deps.version });
  }

  get id(): string {
    return this.deps.config.RUNNER_ID;
  }

  /** Variations in hand. */
  get active(): number {
    return this.tasks.size;
  }

  private beat(): RunnerBeat {
    const { config, version } = this.deps;
    return { id: config.RUNNER_ID, host: hostname(), version, concurrency: config.CONCURRENCY, active: this.tasks.size };
  }

  /**
   * Start-up: empty WORK_DIR (nothing is in hand yet), register, hand back variations a previous life of this
   * runner id left running and sweep their jobs' outputs, then start ticking.
   */
  async start(): Promise<void> {
    const { config, db, log } = this.deps;
    await mkdir(config.WORK_DIR, { recursive: true });
    await sweepWorkDir(config.WORK_DIR, new Set(), log);
    const now = Date.now();
    await upsertRunner(db, this.beat(), now);
    const leftovers = await recoverRunnerVariations(db, config.RUNNER_ID, now);
    this.lastDbOkAt = Date.now();
    if (leftovers.length) log.warn("recovered variations left by a previous run of this runner id", { jobs: leftovers.length });
    for (const jobId of leftovers) this.track(this.sweepJob(jobId));
    log.info("runner started", {
      id: config.RUNNER_ID,
      concurrency: config.CONCURRENCY,
      work_dir: config.WORK_DIR,
      poll_ms: config.POLL_MS,
      watch_ms: config.WATCH_MS,
      lease_ms: config.LEASE_MS,
    });
    this.runTick();
  }

  health(): { ok: boolean; runnerId: string; active: number; ffmpeg: number; stopping: boolean; lastDbOkMsAgo: number } {
    const { config } = this.deps;
    const ago = Date.now() - this.lastDbOkAt;
    const limit = Math.max(config.LEASE_MS, 5 * Math.max(config.POLL_MS, config.WATCH_MS));
    return {
      ok: this.lastDbOkAt > 0 && ago < limit && !this.stopping,
      runnerId: config.RUNNER_ID,
      active: this.tasks.size,
      ffmpeg: this.processes.size,
      stopping: this.stopping,
      lastDbOkMsAgo: ago,
    };
  }

  private schedule(): void {
    if (this.stopping) return;
    if (this.timer) clearTimeout(this.timer);
    const { WATCH_MS, POLL_MS } = this.deps.config;
    const interval = this.tasks.size > 0 ? WATCH_MS : POLL_MS;
    // Fixed rate, not fixed delay: the round trip's own duration must not stretch the cancel-watch period.
    const delay = Math.max(0, this.lastTickStart + interval - performance.now());
    this.timer = setTimeout(() => this.runTick(), delay);
  }

  /** Runs a tick now, or right after the one in flight (ticks never overlap: one round trip at a time). */
  private runTick(): void {
    if (this.inFlight) {
      this.tickAgain = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.lastTickStart = performance.now();
    this.inFlight = this.tick()
      .catch((err) => this.deps.log.error("tick failed", { error: errorMessage(err) }))
      .finally(() => {
        this.inFlight = null;
        if (this.tickAgain && !this.stopping) {
          this.tickAgain = false;
          this.runTick();
        } else {
          this.schedule();
        }
      });
  }

  private async tick(): Promise<void> {
    const { config, db, log, metrics } = this.deps;
    const now = Date.now();
    stopExpired(this.tasks.values(), now);
    const watched = watchedOf(this.tasks.values());
    const free = this.freeSlots();
    const t0 = performance.now();
    metrics.ticks.inc();
    let result;
    try {
      result = await runnerRoundTrip(db, {
        runnerId: config.RUNNER_ID,
        now,
        leaseMs: config.LEASE_MS,
        variations: heartbeatPayload(watched, now),
        claim: free,
        beat: this.beat(),
      });
    } catch (err) {
      metrics.dbErrors.inc();
      if (Date.now() - this.lastDbErrorLogAt > 10_000) {
        this.lastDbErrorLogAt = Date.now();
        log.warn("database round trip failed; retrying", { error: errorMessage(err) });
      }
      return;
    }
    this.lastDbOkAt = Date.now();
    if (free > 0) metrics.claimLatency.observe((performance.now() - t0) / 1000);

    if (result.heartbeat) applyHeartbeat(watched, result.heartbeat, now + config.LEASE_MS);
    if (result.claim) {
      for (const r of result.claim.reaped) log.info("reaped expired lease", { variation: r.id, job: r.jobId, status: r.status });
      this.gate.claimed(free, result.claim.claimed.length);
      for (const claimed of result.claim.claimed) this.startTask(claimed);
    }
    if (this.tasks.size === 0 && this.workDirDirty && !this.stopping) {
      // Idle: nothing in hand, so no local file is needed any more (except a thumbnail still being made).
      await this.sources.evictIdle();
      const inUse = this.sources.jobsInUse();
      this.workDirDirty = inUse.size > 0;
      await sweepWorkDir(config.WORK_DIR, inUse, log);
    }
  }

  private freeSlots(): number {
    return this.gate.free(this.tasks.values(), Date.now(), this.stopping);
  }

  private onSlotFree(): void {
    // Claim right away instead of waiting for the next tick, if the queue had more.
    if (!this.stopping && this.gate.queueHadMore && this.freeSlots() > 0) this.runTick();
  }

  private startTask(claimed: ClaimedVariation): void {
    const { config, db, log, metrics } = this.deps;
    metrics.claimed.inc();
    if (this.stopping) {
      // A claim that raced with shutdown: give it straight back.
      this.track(
        releaseVariation(db, { variationId: claimed.id, runnerId: config.RUNNER_ID, now: Date.now() }).catch((err) =>
          log.warn("could not release a claim made during shutdown", { variation: claimed.id, error: errorMessage(err) }),
        ),
      );
      return;
    }
    this.workDirDirty = true;
    const task = new VariationTask(this.ctx, claimed);
    this.tasks.set(task.id, task);
    metrics.active.set(this.tasks.size);
    void task.done.then((outcome) => this.onTaskDone(task, outcome));
  }

  private onTaskDone(task: VariationTask, outcome: TaskOutcome): void {
    this.tasks.delete(task.id);
    this.deps.metrics.active.set(this.tasks.size);
    this.deps.log.debug("task done", { variation: task.id, outcome });
    const jobStillInHand = [...this.tasks.values()].some((t) => t.jobId === task.jobId);
    if (!jobStillInHand && !this.stopping) this.track(this.sweepJob(task.jobId));
    this.onSlotFree();
  }

  /** After the last local variation of a job: if the job is terminal, remove its local files and orphan outputs. */
  private async sweepJob(jobId: string): Promise<void> {
    const { config, db, blobs, log } = this.deps;
    try {
      const { terminal } = await sweepJobOutputs({ db, blobs, log }, jobId);
      if (!terminal || [...this.tasks.values()].some((t) => t.jobId === jobId)) return;
      await this.sources.evictJob(jobId);
      if (!this.sources.jobsInUse().has(jobId)) await rm(join(config.WORK_DIR, jobId), { recursive: true, force: true });
      this.thumbnails.forget(jobId);
    } catch (err) {
      log.warn("job sweep failed (the next sweep or the edge cron retries)", { job: jobId, error: errorMessage(err) });
    }
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  /**
   * Graceful shutdown (SIGTERM/SIGINT, e.g. `docker stop`): stop claiming, run the stop sequence on every
   * FFmpeg, hand the variations back to the queue (no attempt counted), deregister. Fits well inside Docker's
   * 10 s: at worst two grace periods plus one round trip per variation.
   */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<void> {
    const { config, db, log } = this.deps;
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    log.info("shutting down: stopping work and handing it back", { active: this.tasks.size });
    await this.inFlight;
    for (const t of this.tasks.values()) t.stop("shutdown");
    this.sources.abortAll();
    const all = () => Promise.allSettled([...this.tasks.values()].map((t) => t.done));
    await Promise.race([all(), sleep(2 * config.STOP_GRACE_MS + 2000)]);
    if (this.tasks.size > 0) {
      log.warn("variations still busy after the stop sequence: killing", { active: this.tasks.size });
      this.processes.killAll();
      await Promise.race([all(), sleep(1000)]);
    }
    await this.thumbnails.close();
    await Promise.race([Promise.allSettled([...this.background]), sleep(2000)]);
    await removeRunner(db, config.RUNNER_ID).catch((err) => log.warn("could not deregister", { error: errorMessage(err) }));
    log.info("runner stopped");
  }

  /** Second signal: kill every FFmpeg at once; the shutdown in progress then finishes quickly. */
  killNow(): void {
    this.stopping = true;
    this.processes.killAll();
    this.sources.abortAll();
  }
}
