import { hostname } from "node:os";
import type { Db } from "../db/client";
import { listRunners, removeRunner, upsertRunner, type RunnerBeat } from "../db/queries/runners";
import { recoverRunnerVariations, releaseVariation, runnerRoundTrip, type ClaimedVariation } from "../db/queries/variations";
import type { BlobClient } from "./blobs";
import type { RunnerConfig } from "./config";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { ProcessRegistry } from "./processes";
import { SourceCache } from "./sources";
import { ClaimGate, RefundBudget } from "./claim";
import { ClockCheck } from "./clock";
import { within } from "./delay";
import { DiskRoom } from "./disk-room";
import { EdgeCheck } from "./edge-check";
import { runnerHealth, type RunnerHealth } from "./health";
import { JobFiles } from "./job-files";
import { logStarted, preflight } from "./preflight";
import { Thumbnails } from "./thumbnails";
import { Ticker } from "./ticker";
import { applyHeartbeat, heartbeatPayload, inHandOf, stopExpired, stopStalled, watchedOf } from "./watch";
import { VariationTask, type TaskOutcome, type WorkContext } from "./work";
import { childUidsLeft } from "./child-env";
import { ownWorkDir, releaseWorkDir } from "./workdir";
import { WorkDirUpkeep } from "./workdir-upkeep";

export interface RunnerDeps {
  config: RunnerConfig;
  db: Db;
  blobs: BlobClient;
  metrics: RunnerMetrics;
  log: Logger;
  version: string;
  /** Source cache budget in bytes (default 4 GiB). */
  sourceCacheBytes?: number;
  /** How often WORK_DIR is looked through for dead predecessors' directories (default PREDECESSOR_QUIET_MS). */
  predecessorSweepMs?: number;
  /** How often the runner touches its directory's mark (default MARK_TOUCH_MS). */
  markTouchMs?: number;
}

/** All of a graceful shutdown after the signal: inside Docker's default 10 s with room to exit. */
const SHUTDOWN_BUDGET_MS = 7000;
/** Edge failures per source this runner hands back without counting an attempt. */
const EDGE_REFUNDS_PER_SOURCE = 5;
/**
 * Full disks per source this runner hands back uncounted after giving back its idle cached sources: each needs bytes
 * the cache really gave back, and this bounds even a source whose cache keeps being refilled by other jobs' claims.
 */
const DISK_REFUNDS_PER_SOURCE = 2;

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
  /** Keyed by task (variation id + attempt): a re-claim of the same variation never overwrites the older task. */
  private readonly tasks = new Map<string, VariationTask>();
  private readonly ticker: Ticker;
  private stopping = false;
  /** The start-up's registration (upsertRunner) once sent: the shutdown deregisters only after it settled. */
  private registering: Promise<void> | null = null;
  private shutdownPromise: Promise<void> | null = null;
  private lastDbOkAt = 0;
  private lastDbErrorLogAt = 0;
  /** This runner's own marked directory under WORK_DIR. */
  private readonly workDir: string;
  private readonly upkeep: WorkDirUpkeep;
  private readonly disk: DiskRoom;
  private readonly jobFiles: JobFiles;
  private readonly background = new Set<Promise<unknown>>();
  private readonly gate: ClaimGate;
  private readonly edgeRefunds = new RefundBudget(EDGE_REFUNDS_PER_SOURCE);
  private readonly diskRefunds = new RefundBudget(DISK_REFUNDS_PER_SOURCE);
  private readonly clock: ClockCheck;
  private readonly edge: EdgeCheck;
  /** Slots the round trip in flight asks for: a re-draw must not take one of them meanwhile. */
  private claimsInFlight = 0;

  constructor(private readonly deps: RunnerDeps) {
    const { config, log, metrics, blobs } = deps;
    this.processes = new ProcessRegistry({ graceMs: config.STOP_GRACE_MS, log, metrics });
    this.sources = new SourceCache({
      workDir: ownWorkDir(config.WORK_DIR, config.RUNNER_ID),
      blobs,
      ffmpeg: config.FFMPEG_PATH,
      ffprobe: config.FFPROBE_PATH,
      log,
      maxBytes: deps.sourceCacheBytes,
      limits: { maxSeconds: config.MAX_SOURCE_SECONDS, maxDimension: config.MAX_SOURCE_DIMENSION },
    });
    this.thumbnails = new Thumbnails(() => this.ctx);
    this.gate = new ClaimGate(config.CONCURRENCY);
    this.ticker = new Ticker({
      tick: () => this.tick(),
      intervalMs: () => (this.tasks.size > 0 ? config.WATCH_MS : config.POLL_MS),
      stopping: () => this.stopping,
      log,
    });
    this.clock = new ClockCheck(config.LEASE_MS, log);
    this.edge = new EdgeCheck(blobs, this.clock, log);
    this.workDir = ownWorkDir(config.WORK_DIR, config.RUNNER_ID);
    this.upkeep = new WorkDirUpkeep(deps, this.workDir);
    this.disk = new DiskRoom(this.workDir, config.MIN_FREE_BYTES, log);
    this.jobFiles = new JobFiles({
      db: deps.db,
      blobs,
      log,
      sources: this.sources,
      thumbnails: this.thumbnails,
      workDir: this.workDir,
      jobInHand: (jobId) => [...this.tasks.values()].some((t) => t.jobId === jobId),
    });
    this.ctx = {
      config,
      workDir: this.workDir,
      db: deps.db,
      blobs,
      sources: this.sources,
      processes: this.processes,
      metrics,
      log,
      thumbnails: this.thumbnails,
      onEncodeSlotFree: () => this.onSlotFree(),
      mayEncode: (task) => this.gate.encodeRoom(this.tasks.values(), this.claimsInFlight, task) > 0,
      onEdgeTrouble: () => {
        const ms = this.gate.edgeTrouble(Date.now());
        log.warn("edge trouble: pausing claims", { ms });
      },
      onEdgeOk: () => this.gate.edgeOk(),
      onLocalTrouble: (err) => {
        const ms = this.gate.localTrouble(Date.now());
        log.warn("local trouble: pausing claims", { ms, error: err.message, ...(err.detail ? { detail: err.detail } : {}) });
      },
      mayRefund: (sourceId) => this.edgeRefunds.take(sourceId),
      roomFromCache: (task) => {
        const mark = task.cacheMark ?? this.sources.freedBytes;
        const { removed } = this.sources.dropIdle();
        return { refund: this.sources.freedBytes > mark && this.diskRefunds.take(task.claim.sourceId), removed };
      },
      jobFilesRemoved: (jobId) => this.jobFiles.jobFilesRemoved(jobId),
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
   * Start-up: take (and empty) this runner's own directory under WORK_DIR (nothing is in hand yet), register,
   * hand back variations a previous life of this runner id left running and sweep their jobs' outputs, remove the
   * directories of runners gone for good (any host sharing WORK_DIR), then tick. What comes before registering, in
   * its safe order: runner/preflight.ts.
   */
  async start(): Promise<void> {
    const { config, db, log } = this.deps;
    const found = await preflight(this.deps);
    this.ctx.zoomScaler = found.zoomScaler;
    if (this.stopping) return;
    const now = Date.now();
    this.registering = upsertRunner(db, this.beat(), now);
    await this.registering;
    // A shutdown that came meanwhile deregistered after this registration (see doShutdown): nothing more to start.
    if (this.stopping) return;
    const leftovers = await recoverRunnerVariations(db, config.RUNNER_ID, now);
    const registered = new Set((await listRunners(db)).map((r) => r.id));
    // Before the first claim, which writes leases with this machine's clock and needs the edge to take its token;
    // bounded, so an edge that hangs does not hold the start-up (the check then finishes, or not, in the background).
    await this.edge.atStart();
    this.lastDbOkAt = Date.now();
    await this.upkeep.removeAbandoned((id) => registered.has(id), now);
    // Not after a shutdown that came during the start: it has released the directory and would never clear the
    // mark's timer.
    if (!this.stopping) this.upkeep.startMarking();
    if (leftovers.length) log.warn("recovered variations left by a previous run of this runner id", { jobs: leftovers.length });
    for (const jobId of leftovers) this.track(this.jobFiles.sweepJob(jobId));
    // No first tick after a shutdown that came during the start: its heartbeat would write the row back.
    if (this.stopping) return;
    logStarted(config, this.workDir, found, log);
    this.ticker.run();
  }

  health(): RunnerHealth {
    const { config, blobs } = this.deps;
    const state = { lastDbOkAt: this.lastDbOkAt, stopping: this.stopping, active: this.tasks.size, ffmpeg: this.processes.size };
    return runnerHealth({ config, blobs, clock: this.clock, ...state });
  }

  private async tick(): Promise<void> {
    const { config, db, log, metrics } = this.deps;
    this.upkeep.sweepPredecessorsIfDue();
    // In the background: a slow edge must not stretch the cancel-watch period.
    if (this.edge.due()) void this.edge.start();
    let room = await this.disk.hasRoom();
    // The sources kept for later variations are this runner's own to give back: a runner that is never idle (a long
    // encode in hand) otherwise held them, and claimed nothing, until every task it had ended.
    if (!room && (await this.sources.evictIdle()) > 0) room = await this.disk.hasRoom();
    // Every snapshot of the tasks is taken together, after the last await before the round trip.
    const now = Date.now();
    stopExpired(this.tasks.values(), now);
    if (stopStalled(this.tasks.values(), now, config.STALL_MS) > 0) log.warn("encode stalled: stopping it", { stall_ms: config.STALL_MS });
    const watched = watchedOf(this.tasks.values());
    const inHand = inHandOf(this.tasks.values());
    const free = room ? this.freeSlots() : 0;
    const t0 = performance.now();
    metrics.ticks.inc();
    // Slots asked for until the claimed tasks (phase "source") count themselves, on every path out of here.
    this.claimsInFlight = free;
    try {
      let result;
      try {
        result = await runnerRoundTrip(db, {
          runnerId: config.RUNNER_ID,
          now,
          leaseMs: config.LEASE_MS,
          variations: heartbeatPayload(watched, now),
          inHand,
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

      for (const s of result.stranded) {
        log.warn("handed back a variation this runner held in the database but not in hand", { variation: s.id, job: s.jobId, now: s.status });
      }
      if (result.heartbeat) applyHeartbeat(watched, result.heartbeat, now + config.LEASE_MS);
      if (result.claim) {
        for (const r of result.claim.reaped) log.info("reaped expired lease", { variation: r.id, job: r.jobId, status: r.status });
        this.gate.claimed(free, result.claim.claimed.length);
        for (const claimed of result.claim.claimed) this.startTask(claimed);
      }
    } finally {
      this.claimsInFlight = 0;
    }
    if (this.tasks.size === 0 && this.jobFiles.mayBeLeft && !this.stopping) {
      // Idle: nothing in hand, so no local file is needed any more (except a thumbnail still being made).
      await this.jobFiles.sweepIdle();
    }
  }

  private freeSlots(): number {
    // A clock far off from the edge's would write leases that take over other runners' work, or lose its own; a
    // token the edge refuses would fail every download and upload; without a uid left for FFmpeg nothing can run.
    if (!this.edge.checked || this.clock.off || this.deps.blobs.tokenRefused || childUidsLeft() === 0) return 0;
    return this.gate.free(this.tasks.values(), Date.now(), this.stopping);
  }

  private onSlotFree(): void {
    // Claim right away instead of waiting for the next tick, if the queue had more.
    if (!this.stopping && this.gate.queueHadMore && this.freeSlots() > 0) this.ticker.run();
  }

  private startTask(claimed: ClaimedVariation): void {
    const { config, db, log, metrics } = this.deps;
    metrics.claimed.inc();
    if (this.stopping) {
      // A claim that raced with shutdown: give it straight back.
      this.track(
        releaseVariation(db, { variationId: claimed.id, runnerId: config.RUNNER_ID, attempt: claimed.attempt, now: Date.now() }).catch((err) =>
          log.warn("could not release a claim made during shutdown", { variation: claimed.id, error: errorMessage(err) }),
        ),
      );
      return;
    }
    this.jobFiles.taskStarted();
    const task = new VariationTask(this.ctx, claimed);
    this.tasks.set(task.key, task);
    metrics.active.set(this.tasks.size);
    void task.done.then((outcome) => this.onTaskDone(task, outcome));
  }

  private onTaskDone(task: VariationTask, outcome: TaskOutcome): void {
    // A completion after local trouble (a re-draw that failed on a full disk, completed with its earlier draw) is
    // not a sign the machine is fine again: the claim pause keeps growing.
    if (outcome === "completed" && !task.hadLocalTrouble) this.gate.localOk();
    if (this.tasks.get(task.key) === task) this.tasks.delete(task.key);
    this.deps.metrics.active.set(this.tasks.size);
    this.deps.log.debug("task done", { variation: task.id, outcome });
    const jobStillInHand = [...this.tasks.values()].some((t) => t.jobId === task.jobId);
    if (!jobStillInHand && !this.stopping) this.track(this.jobFiles.sweepJob(task.jobId));
    this.onSlotFree();
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  /**
   * Graceful shutdown (SIGTERM/SIGINT, e.g. `docker stop`): stop claiming, run the stop sequence on every FFmpeg
   * FIRST (never behind a slow database), hand the variations back (no attempt counted), deregister. Every wait
   * after the stop sequence is bounded by one deadline inside Docker's 10 s: what a slow database could not record
   * is handed back by the next start (stranded rule) or by lease expiry.
   */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<void> {
    const { config, db, log } = this.deps;
    const deadline = performance.now() + SHUTDOWN_BUDGET_MS;
    const left = () => Math.max(0, deadline - performance.now());
    this.stopping = true;
    this.ticker.cancel();
    log.info("shutting down: stopping work and handing it back", { active: this.tasks.size });
    for (const t of this.tasks.values()) t.stop("shutdown");
    this.sources.abortAll();
    this.processes.stopAll("shutdown");
    const all = () => Promise.allSettled([...this.tasks.values()].map((t) => t.done));
    await within(this.processes.allExited(), Math.min(2 * config.STOP_GRACE_MS + 500, left()));
    if (this.processes.size > 0) {
      log.warn("FFmpeg still running after the stop sequence: killing", { processes: this.processes.size });
      this.processes.killAll();
    }
    if (!(await within(all(), left()))) log.warn("hand-back not confirmed before the deadline; leases expire instead", { active: this.tasks.size });
    // Against the whole deadline: a claim whose reply came after the exit was never handed back (a fresh RUNNER_ID
    // each start: no stranded rule finds it), so it sat out LEASE_MS and then cost an attempt. One that arrives now is
    // handed straight back by startTask, and that release is among the background work waited for below: the last
    // second is kept for it and the local clean-up (deregistering, the work directory).
    await within(this.ticker.inFlight ?? Promise.resolve(), Math.max(0, left() - 1000));
    await within(this.thumbnails.close(), Math.min(1000, left()));
    await within(Promise.allSettled([...this.background]), left());
    // After a registration still in flight (a shutdown during the start): sent before it lands, the delete found no
    // row and the registration then left one behind, shown as a runner online until it aged out.
    await within((this.registering ?? Promise.resolve()).catch(() => {}), left());
    await within(removeRunner(db, config.RUNNER_ID).catch((err) => log.warn("could not deregister", { error: errorMessage(err) })), left());
    this.upkeep.stopMarking();
    await within(releaseWorkDir(this.workDir, config.RUNNER_ID, log), left());
    log.info("runner stopped");
  }

  /** Second signal: kill every FFmpeg at once; the shutdown in progress then finishes quickly. */
  killNow(): void {
    this.stopping = true;
    this.processes.killAll();
    this.sources.abortAll();
  }
}
