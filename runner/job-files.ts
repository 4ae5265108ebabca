import { join } from "node:path";
import type { Db } from "../db/client";
import type { BlobClient } from "./blobs";
import { errorMessage, type Logger } from "./log";
import type { SourceCache } from "./sources";
import { sweepJobOutputs } from "./sweep";
import type { Thumbnails } from "./thumbnails";
import { removeTree, sweepWorkDir } from "./workdir";

export interface JobFilesDeps {
  db: Db;
  blobs: BlobClient;
  log: Logger;
  sources: SourceCache;
  thumbnails: Thumbnails;
  /** This runner's own marked directory under WORK_DIR. */
  workDir: string;
  /** Whether a task of the job is in hand; must answer without awaiting (see sweepJob). */
  jobInHand: (jobId: string) => boolean;
}

/** Jobs' local files under this runner's directory, removed once no task needs them; and finished jobs' orphan outputs. */
export class JobFiles {
  /** Local files may exist for jobs no longer in hand (cleared by the idle sweep). */
  private dirty = false;
  /** Removals of finished jobs' local files under way, by job: each one after the job's earlier one. */
  private readonly jobRemovals = new Map<string, Promise<void>>();

  constructor(private readonly deps: JobFilesDeps) {}

  /** After the last local variation of a job: if the job is terminal, remove its local files and orphan outputs. */
  async sweepJob(jobId: string): Promise<void> {
    const { db, blobs, log } = this.deps;
    try {
      const { terminal } = await sweepJobOutputs({ db, blobs, log }, jobId);
      // No await between this look and removeJobFiles registering its removal: a task started after it waits.
      if (!terminal || this.deps.jobInHand(jobId)) return;
      await this.removeJobFiles(jobId);
    } catch (err) {
      log.warn("job sweep failed (the next sweep or the edge cron retries)", { job: jobId, error: errorMessage(err) });
    }
  }

  /**
   * Removes a finished job's local files. A task claimed for the same job meanwhile (more variations added) waits
   * for it before making its directory (jobFilesRemoved): checking for such a task first was not enough, as one
   * claimed during the removal's awaits had its directory and download removed under it.
   */
  private removeJobFiles(jobId: string): Promise<void> {
    const { sources, thumbnails, workDir } = this.deps;
    const before = this.jobRemovals.get(jobId);
    const removal = (async () => {
      await before?.catch(() => {});
      await sources.evictJob(jobId);
      thumbnails.forget(jobId);
      if (!sources.jobsInUse().has(jobId)) await removeTree(join(workDir, jobId));
    })();
    this.jobRemovals.set(jobId, removal);
    void removal.catch(() => {}).finally(() => {
      if (this.jobRemovals.get(jobId) === removal) this.jobRemovals.delete(jobId);
    });
    return removal;
  }

  /** A task was started: its job has local files from now on. */
  taskStarted(): void {
    this.dirty = true;
  }

  /** Local files may exist for jobs no longer in hand. */
  get mayBeLeft(): boolean {
    return this.dirty;
  }

  /** With nothing in hand: removes every job's local files but those still in use. */
  async sweepIdle(): Promise<void> {
    const { sources, workDir, log } = this.deps;
    await sources.evictIdle();
    const inUse = sources.jobsInUse();
    this.dirty = inUse.size > 0;
    await sweepWorkDir(workDir, inUse, log);
  }

  /** Resolves once no removal of the job's local files is under way (it never rejects: a failed one is logged). */
  async jobFilesRemoved(jobId: string): Promise<void> {
    const removal = this.jobRemovals.get(jobId);
    if (!removal) return;
    this.deps.log.debug("waiting for the job's local files to be removed", { job: jobId });
    await removal.catch(() => {});
  }
}
