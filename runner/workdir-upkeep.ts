import type { RunnerConfig } from "./config";
import { errorMessage, type Logger } from "./log";
import { MARK_TOUCH_MS, PREDECESSOR_QUIET_MS, removeAbandonedWorkDirs, touchWorkDir } from "./workdir";

export interface WorkDirUpkeepDeps {
  config: RunnerConfig;
  log: Logger;
  /** How often WORK_DIR is looked through for dead predecessors' directories (default PREDECESSOR_QUIET_MS). */
  predecessorSweepMs?: number;
  /** How often the runner touches its directory's mark (default MARK_TOUCH_MS). */
  markTouchMs?: number;
}

/** What a live runner does for the runners sharing WORK_DIR: touches its own directory's mark, removes gone runners' directories. */
export class WorkDirUpkeep {
  /** When this runner last told runners sharing WORK_DIR that it is alive (runner/workdir.ts). */
  private markTimer: NodeJS.Timeout | null = null;
  private predecessorsSweptAt = 0;
  private sweepingPredecessors: Promise<unknown> | null = null;

  constructor(
    private readonly deps: WorkDirUpkeepDeps,
    /** This runner's own marked directory under WORK_DIR. */
    private readonly workDir: string,
  ) {}

  /** Start-up: removes the directories of runners gone for good (any host), `registered` telling the live ids. */
  async removeAbandoned(registered: (runnerId: string) => boolean, now: number): Promise<void> {
    const { config, log } = this.deps;
    await removeAbandonedWorkDirs(config.WORK_DIR, this.workDir, registered, now, log);
    this.predecessorsSweptAt = Date.now();
  }

  /**
   * On a timer of its own, not in the tick: a tick waits POLL_MS (unbounded) or a slow database, and a mark left
   * quiet that long makes this live runner's directory look like a dead predecessor's to its neighbours.
   */
  startMarking(): void {
    const { log } = this.deps;
    this.markTimer = setInterval(() => {
      touchWorkDir(this.workDir, Date.now()).catch((err) => log.warn("could not touch the work dir's mark", { error: errorMessage(err) }));
    }, this.deps.markTouchMs ?? MARK_TOUCH_MS);
    this.markTimer.unref();
  }

  stopMarking(): void {
    if (this.markTimer) clearInterval(this.markTimer);
  }

  /** From the tick: looks for dead predecessors' directories again once predecessorSweepMs has passed. */
  sweepPredecessorsIfDue(): void {
    const { config, log } = this.deps;
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
  }
}
