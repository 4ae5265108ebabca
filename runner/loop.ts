import { statfs } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Db } from "../db/client";
import { listRunners, removeRunner, upsertRunner, type RunnerBeat } from "../db/queries/runners";
import { recoverRunnerVariations, releaseVariation, runnerRoundTrip, type ClaimedVariation } from "../db/queries/variations";
import type { BlobClient } from "./blobs";
import type { RunnerConfig } from "./config";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { ProcessRegistry } from "./processes";
import { detectZoomScaler } from "./ffmpeg";
import { SourceCache } from "./sources";
import { sweepJobOutputs } from "./sweep";
import { ClaimGate, RefundBudget } from "./claim";
import { ClockCheck } from "./clock";
import { within } from "./delay";
import { Thumbnails } from "./thumbnails";
import { applyHeartbeat, heartbeatPayload, inHandOf, stopExpired, stopStalled, watchedOf } from "./watch";
import { VariationTask, type TaskOutcome, type WorkContext } from "./work";
import { childUidsLeft, configureChildren, describeUser, killLeftovers } from "./child-env";
import { checkFfmpegUser, claimWorkDir, DuplicateRunnerError, refuseDuplicateRunner, FfmpegUserError, WorkDirError, MARK_TOUCH_MS, ownWorkDir, PREDECESSOR_QUIET_MS, releaseWorkDir, removeAbandonedWorkDirs, removeTree, sweepWorkDir, touchWorkDir } from "./workdir";

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


/**
 * The runner's main loop. One tick = one database round trip: heartbeat for the variations in hand (lease,
 * progress, cancel watch), claims for free slots, registry beat. Ticks run every WATCH_MS while busy and every
 * POLL_MS while idle, and right away when a slot frees up while the queue still had work.
 */
/** All of a graceful shutdown after the signal: inside Docker's default 10 s with room to exit. */
const SHUTDOWN_BUDGET_MS = 7000;
/** Edge failures per source this runner hands back without counting an attempt. */
const EDGE_REFUNDS_PER_SOURCE = 5;

/** How often the edge's clock and the token's acceptance are checked; more often while either is wrong. */
const EDGE_CHECK_MS = 60_000;
const EDGE_RECHECK_MS = 10_000;
const EDGE_CHECK_AT_START_MS = 3_000;

export class Runner {
  readonly processes: ProcessRegistry;
  readonly sources: SourceCache;
  readonly thumbnails: Thumbnails;
  private readonly ctx: WorkContext;
  /** Keyed by task (variation id + attempt): a re-claim of the same variation never overwrites the older task. */
  private readonly tasks = new Map<string, VariationTask>();
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private tickAgain = false;
  private stopping = false;
  private shutdownPromise: Promise<void> | null = null;
  private lastDbOkAt = 0;
  private lastTickStart = 0;
  private lastDbErrorLogAt = 0;
  private lastDiskLogAt = 0;
  /** This runner's own marked directory under WORK_DIR. */
  private readonly workDir: string;
  /** Local files may exist for jobs no longer in hand (cleared by the idle sweep). */
  private workDirDirty = false;
  /** When this runner last told runners sharing WORK_DIR that it is alive (runner/workdir.ts). */
  private markTimer: NodeJS.Timeout | null = null;
  private predecessorsSweptAt = 0;
  private sweepingPredecessors: Promise<unknown> | null = null;
  private readonly background = new Set<Promise<unknown>>();
  private readonly gate: ClaimGate;
  private readonly edgeRefunds = new RefundBudget(EDGE_REFUNDS_PER_SOURCE);
  private readonly clock: ClockCheck;
  private edgeCheck: Promise<void> | null = null;
  private edgeCheckedAt = 0;
  /** The first check of the edge has settled: claims wait for it (it bounds itself to about 10 s). */
  private edgeChecked = false;
  private edgeTrouble: string | null = null;
  private edgeTroubleLoggedAt = 0;
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
    this.clock = new ClockCheck(config.LEASE_MS, log);
    this.workDir = ownWorkDir(config.WORK_DIR, config.RUNNER_ID);
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
      jobFilesRemoved: (jobId) => this.jobFilesRemoved(jobId),
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
   * directories of runners gone for good (any host sharing WORK_DIR), then tick.
   */
  async start(): Promise<void> {
    const { config, db, log } = this.deps;
    const limits = configureChildren({
      setpriv: config.SETPRIV_PATH,
      user: config.FFMPEG_USER,
      // One uid for all is shared by the encodes and what runs beside them (probes, measurements, thumbnails).
      nproc: config.PRLIMIT_PATH ? { prlimit: config.PRLIMIT_PATH, perRun: config.FFMPEG_MAX_PROCESSES, sharedBy: config.CONCURRENCY + 2 } : undefined,
      onWaiting: (n) => this.deps.metrics.childrenWaiting.set(n),
      onQuarantine: (uid, survivors) => {
        log.error("processes of an FFmpeg uid survived SIGKILL: that uid is not used again", { uid, pids: survivors.join(",") });
        if (childUidsLeft() === 0) log.error("no FFmpeg uid left: this runner claims nothing more and /healthz answers 503 (restart it, or its host)");
      },
    });
    // First: a second start with the id of a live runner on this host must leave that runner's FFmpeg alone (the
    // kill below takes every process of the range's uids, whoever started it).
    await refuseDuplicateRunner(config.WORK_DIR, config.RUNNER_ID);
    // What a previous life of this runner's children left running as the range's uids (it still writes in WORK_DIR).
    const kept = await killLeftovers();
    // Something of the range that cannot be killed would share a uid with the uploads' FFmpeg (or the killer's).
    if (kept.length) throw new FfmpegUserError(`processes running as FFMPEG_USER's uids ${kept.join(", ")} survive SIGKILL; the runner will not use that range`);
    // Before registering: a stop asked meanwhile finds nothing half started.
    this.ctx.zoomScaler = await detectZoomScaler(config.FFMPEG_PATH);
    try {
      const own = await claimWorkDir(config.WORK_DIR, config.RUNNER_ID, log);
      await checkFfmpegUser(config.FFMPEG_PATH, own);
    } catch (err) {
      if (err instanceof DuplicateRunnerError || err instanceof FfmpegUserError || err instanceof WorkDirError) throw err;
      throw new WorkDirError(`cannot use WORK_DIR ${config.WORK_DIR}: ${errorMessage(err)}`);
    }
    const now = Date.now();
    await upsertRunner(db, this.beat(), now);
    const leftovers = await recoverRunnerVariations(db, config.RUNNER_ID, now);
    const registered = new Set((await listRunners(db)).map((r) => r.id));
    // Before the first claim, which writes leases with this machine's clock and needs the edge to take its token;
    // bounded, so an edge that hangs does not hold the start-up (the check then finishes, or not, in the background).
    this.edgeCheck = this.checkEdge().finally(() => (this.edgeCheck = null));
    await within(this.edgeCheck, EDGE_CHECK_AT_START_MS);
    this.lastDbOkAt = Date.now();
    await removeAbandonedWorkDirs(config.WORK_DIR, this.workDir, (id) => registered.has(id), now, log);
    this.predecessorsSweptAt = Date.now();
    // On a timer of its own, not in the tick: a tick waits POLL_MS (unbounded) or a slow database, and a mark left
    // quiet that long makes this live runner's directory look like a dead predecessor's to its neighbours. Not after
    // a shutdown that came during the start: it has released the directory and would never clear the timer.
    if (!this.stopping) {
      this.markTimer = setInterval(() => {
        touchWorkDir(this.workDir, Date.now()).catch((err) => log.warn("could not touch the work dir's mark", { error: errorMessage(err) }));
      }, this.deps.markTouchMs ?? MARK_TOUCH_MS);
      this.markTimer.unref();
    }
    if (leftovers.length) log.warn("recovered variations left by a previous run of this runner id", { jobs: leftovers.length });
    for (const jobId of leftovers) this.track(this.sweepJob(jobId));
    log.info("runner started", {
      id: config.RUNNER_ID,
      concurrency: config.CONCURRENCY,
      work_dir: this.workDir,
      poll_ms: config.POLL_MS,
      watch_ms: config.WATCH_MS,
      lease_ms: config.LEASE_MS,
      zoom_scaler: this.ctx.zoomScaler,
      ffmpeg_user: config.FFMPEG_USER ? describeUser(config.FFMPEG_USER) : "runner's own",
      ffmpeg_max_processes: limits.nproc ?? "none",
    });
    if (limits.nproc !== null && limits.nprocAsked !== null && limits.nproc < limits.nprocAsked) {
      log.warn("FFmpeg gets a lower process limit than FFMPEG_MAX_PROCESSES asks: the runner's own hard limit (raise the container's nproc ulimit)", {
        asked: limits.nprocAsked,
        applied: limits.nproc,
      });
    }
    if (!config.FFMPEG_USER && process.getuid?.() === 0) {
      log.warn("FFmpeg runs as root, with access to this runner's secrets: set FFMPEG_USER to run it as an unprivileged user");
    }
    this.runTick();
  }

  health(): {
    ok: boolean;
    runnerId: string;
    active: number;
    ffmpeg: number;
    stopping: boolean;
    lastDbOkMsAgo: number;
    edgeRefusesToken: boolean;
    clockSkewMs: number | null;
    ffmpegUidsLeft: number | null;
  } {
    const { config, blobs } = this.deps;
    const ago = Date.now() - this.lastDbOkAt;
    const limit = Math.max(config.LEASE_MS, 5 * Math.max(config.POLL_MS, config.WATCH_MS));
    const uidsLeft = childUidsLeft();
    return {
      ok: this.lastDbOkAt > 0 && ago < limit && !this.stopping && !blobs.tokenRefused && !this.clock.off && uidsLeft !== 0,
      edgeRefusesToken: blobs.tokenRefused,
      clockSkewMs: this.clock.skewMs,
      ffmpegUidsLeft: uidsLeft,
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
    // A predecessor that died moments before this start (a container restarted at once: same host, often the same
    // pid) still had a fresh mark then, so the start-up sweep left its files; nothing else would look again, and its
    // cached sources would hold the disk until the next restart. Dead predecessors of this host only: that needs no
    // database read (the registry decides about other hosts' runners, at start). In the background: it may be slow.
    if (!this.sweepingPredecessors && Date.now() - this.predecessorsSweptAt >= (this.deps.predecessorSweepMs ?? PREDECESSOR_QUIET_MS)) {
      this.predecessorsSweptAt = Date.now();
      this.sweepingPredecessors = removeAbandonedWorkDirs(config.WORK_DIR, this.workDir, () => true, this.predecessorsSweptAt, log)
        .catch((err) => log.warn("could not look for dead runners' work files", { error: errorMessage(err) }))
        .finally(() => (this.sweepingPredecessors = null));
    }
    const suspect = this.clock.off || this.deps.blobs.tokenRefused || this.clock.skewMs === null;
    if (!this.edgeCheck && performance.now() - this.edgeCheckedAt >= (suspect ? EDGE_RECHECK_MS : EDGE_CHECK_MS)) {
      // In the background: a slow edge must not stretch the cancel-watch period.
      this.edgeCheck = this.checkEdge().finally(() => (this.edgeCheck = null));
    }
    let room = await this.hasRoom();
    // The sources kept for later variations are this runner's own to give back: a runner that is never idle (a long
    // encode in hand) otherwise held them, and claimed nothing, until every task it had ended.
    if (!room && (await this.sources.evictIdle()) > 0) room = await this.hasRoom();
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
    if (this.tasks.size === 0 && this.workDirDirty && !this.stopping) {
      // Idle: nothing in hand, so no local file is needed any more (except a thumbnail still being made).
      await this.sources.evictIdle();
      const inUse = this.sources.jobsInUse();
      this.workDirDirty = inUse.size > 0;
      await sweepWorkDir(this.workDir, inUse, log);
    }
  }

  /**
   * Reads the edge's clock (an authenticated call): this runner's clock against it (runner/clock.ts), and whether
   * the edge takes RUNNER_TOKEN (the blob client keeps the answer). Either one wrong stops claims; /healthz says which.
   */
  private async checkEdge(): Promise<void> {
    const { blobs, log } = this.deps;
    // Monotonic: the wall clock is what is being checked, and a step of it back must not put the next check off.
    this.edgeCheckedAt = performance.now();
    const sent = Date.now();
    try {
      const edgeNow = await blobs.edgeClock();
      this.clock.observe(sent, Date.now(), edgeNow);
      this.edgeTrouble = null;
    } catch (err) {
      // Said when it changes, else every 5 minutes: a mistyped token is checked every 10 s until it is fixed.
      const trouble = blobs.tokenRefused ? "the edge refuses this runner's RUNNER_TOKEN: not claiming" : "could not read the edge's clock";
      if (trouble !== this.edgeTrouble || performance.now() - this.edgeTroubleLoggedAt > 300_000) {
        this.edgeTrouble = trouble;
        this.edgeTroubleLoggedAt = performance.now();
        (blobs.tokenRefused ? log.error : log.warn)(trouble, { error: errorMessage(err) });
      }
    } finally {
      this.edgeChecked = true;
    }
  }

  /** A runner whose disk is (nearly) full claims nothing: every claim would fail for lack of room. */
  private async hasRoom(): Promise<boolean> {
    const { config, log } = this.deps;
    if (config.MIN_FREE_BYTES === 0) return true;
    try {
      const { bavail, bsize } = await statfs(this.workDir);
      const free = bavail * bsize;
      if (free >= config.MIN_FREE_BYTES) return true;
      if (Date.now() - this.lastDiskLogAt > 30_000) {
        this.lastDiskLogAt = Date.now();
        log.warn("not claiming: WORK_DIR has too little free space", { free_bytes: free, min_free_bytes: config.MIN_FREE_BYTES });
      }
      return false;
    } catch {
      return true;
    }
  }

  private freeSlots(): number {
    // A clock far off from the edge's would write leases that take over other runners' work, or lose its own; a
    // token the edge refuses would fail every download and upload; without a uid left for FFmpeg nothing can run.
    if (!this.edgeChecked || this.clock.off || this.deps.blobs.tokenRefused || childUidsLeft() === 0) return 0;
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
        releaseVariation(db, { variationId: claimed.id, runnerId: config.RUNNER_ID, attempt: claimed.attempt, now: Date.now() }).catch((err) =>
          log.warn("could not release a claim made during shutdown", { variation: claimed.id, error: errorMessage(err) }),
        ),
      );
      return;
    }
    this.workDirDirty = true;
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
    if (!jobStillInHand && !this.stopping) this.track(this.sweepJob(task.jobId));
    this.onSlotFree();
  }

  /** After the last local variation of a job: if the job is terminal, remove its local files and orphan outputs. */
  private async sweepJob(jobId: string): Promise<void> {
    const { db, blobs, log } = this.deps;
    try {
      const { terminal } = await sweepJobOutputs({ db, blobs, log }, jobId);
      // No await between this look and removeJobFiles registering its removal: a task started after it waits.
      if (!terminal || [...this.tasks.values()].some((t) => t.jobId === jobId)) return;
      await this.removeJobFiles(jobId);
    } catch (err) {
      log.warn("job sweep failed (the next sweep or the edge cron retries)", { job: jobId, error: errorMessage(err) });
    }
  }

  /** Removals of finished jobs' local files under way, by job: each one after the job's earlier one. */
  private readonly jobRemovals = new Map<string, Promise<void>>();

  /**
   * Removes a finished job's local files. A task claimed for the same job meanwhile (more variations added) waits
   * for it before making its directory (jobFilesRemoved): checking for such a task first was not enough, as one
   * claimed during the removal's awaits had its directory and download removed under it.
   */
  private removeJobFiles(jobId: string): Promise<void> {
    const before = this.jobRemovals.get(jobId);
    const removal = (async () => {
      await before?.catch(() => {});
      await this.sources.evictJob(jobId);
      this.thumbnails.forget(jobId);
      if (!this.sources.jobsInUse().has(jobId)) await removeTree(join(this.workDir, jobId));
    })();
    this.jobRemovals.set(jobId, removal);
    void removal.catch(() => {}).finally(() => {
      if (this.jobRemovals.get(jobId) === removal) this.jobRemovals.delete(jobId);
    });
    return removal;
  }

  /** Resolves once no removal of the job's local files is under way (it never rejects: a failed one is logged). */
  private async jobFilesRemoved(jobId: string): Promise<void> {
    const removal = this.jobRemovals.get(jobId);
    if (!removal) return;
    this.deps.log.debug("waiting for the job's local files to be removed", { job: jobId });
    await removal.catch(() => {});
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
    if (this.timer) clearTimeout(this.timer);
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
    await within(this.inFlight ?? Promise.resolve(), Math.max(0, left() - 1000));
    await within(this.thumbnails.close(), Math.min(1000, left()));
    await within(Promise.allSettled([...this.background]), left());
    await within(removeRunner(db, config.RUNNER_ID).catch((err) => log.warn("could not deregister", { error: errorMessage(err) })), left());
    if (this.markTimer) clearInterval(this.markTimer);
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
