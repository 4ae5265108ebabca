import { lstat, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Ticket } from "../db/tickets";
import type { BlobClient } from "./blobs";
import { sourceOverLimits, type SourceLimits } from "../db/source-limits";
import { assertDecodable, probeMedia, type MediaInfo } from "./ffmpeg";
import type { Logger } from "./log";
import { samplesFile } from "./samples";
import { makeJobDir } from "./workdir";

/** The source is a valid video but over this runner's limits (duration, resolution): retrying will not help. */
export class SourceOverLimitError extends Error {}

export interface SourceRef {
  sourceId: string;
  jobId: string;
  key: string;
  /** The variation attempt this source is acquired for: the edge serves the source only to its holder. */
  ticket: Ticket;
}

export interface AcquiredSource {
  path: string;
  media: MediaInfo;
  /** True for the first acquirer after the download: it records the probe in the database. */
  fresh: boolean;
  release(): void;
}

interface Entry {
  ref: SourceRef;
  path: string;
  ready: Promise<{ media: MediaInfo; size: number }>;
  /** Aborts the shared download once nobody waits for it any more. */
  controller: AbortController;
  users: number;
  /** Tickets of the acquirers still waiting for the download, oldest first (one entry per acquire call). */
  waiting: { ticket: Ticket }[];
  lastUsed: number;
  size: number;
  probedFresh: boolean;
}

/**
 * Downloads each source once per runner and shares it between that source's variations (including ones running
 * at the same time), probing it once. Bounded: entries nobody uses are evicted, least recently used first, when
 * the byte budget is exceeded. Files live under WORK_DIR/<jobId>/ so a job's sweep removes them with the job.
 */
export class SourceCache {
  private entries = new Map<string, Entry>();
  /** See freedBytes. */
  private freed = 0;

  constructor(
    private readonly opts: {
      workDir: string;
      blobs: BlobClient;
      ffmpeg: string;
      ffprobe: string;
      log: Logger;
      maxBytes?: number;
      /** Checked right after the probe, before the decode check and any encode. */
      limits?: SourceLimits;
    },
  ) {}

  /**
   * Resolves once the source is local and probed. `signal` withdraws this caller only: the shared download is
   * aborted when every waiting caller has withdrawn. Throws NotAVideoError for an undecodable file.
   */
  async acquire(ref: SourceRef, signal: AbortSignal): Promise<AcquiredSource> {
    let entry = this.entries.get(ref.sourceId);
    if (!entry) {
      entry = this.load(ref);
      this.entries.set(ref.sourceId, entry);
    }
    const e = entry;
    const waiter = { ticket: ref.ticket };
    e.users++;
    e.waiting.push(waiter);
    const stopWaiting = () => {
      const i = e.waiting.indexOf(waiter);
      if (i >= 0) e.waiting.splice(i, 1);
    };
    const withdraw = () => {
      stopWaiting();
      if (e.waiting.length === 0 && !e.controller.signal.aborted) e.controller.abort();
    };
    try {
      signal.throwIfAborted();
      const result = await new Promise<{ media: MediaInfo; size: number }>((resolve, reject) => {
        const onAbort = () => reject(signal.reason ?? new DOMException("aborted", "AbortError"));
        signal.addEventListener("abort", onAbort, { once: true });
        e.ready.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
      });
      stopWaiting();
      e.lastUsed = Date.now();
      const fresh = !e.probedFresh;
      e.probedFresh = true;
      let released = false;
      return {
        path: e.path,
        media: result.media,
        fresh,
        release: () => {
          if (released) return;
          released = true;
          e.users--;
          e.lastUsed = Date.now();
          void this.evict();
        },
      };
    } catch (err) {
      withdraw();
      e.users--;
      // A failed or aborted download is not cached: the next claim of this source tries again.
      if (this.entries.get(ref.sourceId) === e && e.users === 0) {
        this.entries.delete(ref.sourceId);
        await rm(e.path, { force: true }).catch(() => {});
        await rm(`${e.path}.part`, { force: true }).catch(() => {});
      }
      throw err;
    }
  }

  private load(ref: SourceRef): Entry {
    const dir = join(this.opts.workDir, ref.jobId);
    const path = join(dir, `src-${ref.sourceId}`);
    const controller = new AbortController();
    const entry: Entry = {
      ref,
      path,
      controller,
      users: 0,
      waiting: [],
      lastUsed: Date.now(),
      size: 0,
      probedFresh: false,
      ready: Promise.resolve({ media: null as unknown as MediaInfo, size: 0 }),
    };
    entry.ready = (async () => {
      await makeJobDir(dir);
      const t0 = performance.now();
      const part = `${path}.part`;
      // Each request of the download (a resume too) shows the ticket of a variation still waiting for it: the first
      // acquirer may have been stopped, and its ticket refused, while others still need the file.
      const ticket = () => entry.waiting[0]?.ticket ?? ref.ticket;
      const size = await this.opts.blobs.download(ref.key, part, controller.signal, ticket);
      await rename(part, path);
      this.opts.log.info("source downloaded", { source: ref.sourceId, bytes: size, ms: Math.round(performance.now() - t0) });
      const media = await probeMedia(this.opts.ffprobe, path, controller.signal);
      const over = this.opts.limits ? sourceOverLimits(media, this.opts.limits) : null;
      if (over) throw new SourceOverLimitError(over);
      await assertDecodable(this.opts.ffmpeg, path, controller.signal);
      entry.size = size;
      return { media, size };
    })();
    // Rejections are handled by every acquirer; this keeps an unawaited failure from being "unhandled".
    entry.ready.catch(() => {});
    return entry;
  }

  /** The eviction pass running, if any; `evictAgain`: a release came during it, so one more pass follows. */
  private evicting: Promise<void> | null = null;
  private evictAgain = false;

  /**
   * One pass at a time: passes started by releases close together each counted the same bytes, and together removed
   * more than the budget asked.
   */
  private evict(): Promise<void> {
    if (this.evicting) {
      this.evictAgain = true;
      return this.evicting;
    }
    this.evicting = (async () => {
      try {
        do {
          this.evictAgain = false;
          await this.evictPass();
        } while (this.evictAgain);
      } finally {
        this.evicting = null;
      }
    })();
    return this.evicting;
  }

  private async evictPass(): Promise<void> {
    const budget = this.opts.maxBytes ?? 4 * 1024 ** 3;
    // A source's sample file (quality samples, up to ~100 MB at 4K) sits beside it and goes with it, so it counts
    // against the budget too: uncounted and left behind, a runner that is never idle filled its disk with them.
    const entries = [...this.entries.values()];
    const bytes = new Map(await Promise.all(entries.map(async (e) => [e, e.size + (await sizeOf(samplesFile(e.path)))] as const)));
    let total = [...bytes.values()].reduce((n, b) => n + b, 0);
    const idle = entries.filter((e) => e.users === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of idle) {
      if (total <= budget) break;
      if (await this.drop(e)) total -= bytes.get(e)!;
    }
  }

  /**
   * Removes an entry and its files, unless a task acquired it since the caller saw it idle (the pass above awaits
   * between entries: deleting a file a new task had just been handed failed that variation for good), or it is no
   * longer the current entry of its source (a newer one may be downloading to the same path). Checked with no await
   * before the map change; both removals are issued at once, before any other task can run.
   */
  private async drop(e: Entry): Promise<boolean> {
    const removed = this.forget(e);
    if (!removed) return false;
    await removed;
    return true;
  }

  /** drop's synchronous part: the entry leaves the map at once, and the removal of its files is returned (or null). */
  private forget(e: Entry): Promise<void> | null {
    if (e.users > 0 || this.entries.get(e.ref.sourceId) !== e) return null;
    this.entries.delete(e.ref.sourceId);
    e.controller.abort();
    this.freed += e.size;
    return Promise.all([rm(e.path, { force: true }).catch(() => {}), rm(samplesFile(e.path), { force: true }).catch(() => {})]).then(() => {});
  }

  /**
   * Source bytes this cache has given back to the disk since it was made (only ever grows; samples not counted).
   * A variation compares it with its value at the attempt's start: did the runner's own cache make room meanwhile?
   */
  get freedBytes(): number {
    return this.freed;
  }

  /** Forgets a job's sources nobody is using (its directory is about to be removed). */
  async evictJob(jobId: string): Promise<void> {
    for (const e of [...this.entries.values()]) if (e.ref.jobId === jobId && e.users === 0) await this.drop(e);
  }

  /**
   * Forgets every source nobody is using, all in one synchronous step (a full disk's outcome decides on it before
   * anything else can run, runner/outcomes.ts `local`): how many went, and the removal of their files (never rejects).
   */
  dropIdle(): { dropped: number; removed: Promise<void> } {
    const removals = [...this.entries.values()].filter((e) => e.users === 0).map((e) => this.forget(e)).filter((p) => p !== null);
    return { dropped: removals.length, removed: Promise.all(removals).then(() => {}) };
  }

  /** Forgets every source nobody is using; how many went. */
  async evictIdle(): Promise<number> {
    const { dropped, removed } = this.dropIdle();
    await removed;
    return dropped;
  }

  /** Aborts every download (shutdown). */
  abortAll(): void {
    for (const e of this.entries.values()) e.controller.abort();
  }

  /** Job ids with a source in use. */
  jobsInUse(): Set<string> {
    return new Set([...this.entries.values()].filter((e) => e.users > 0).map((e) => e.ref.jobId));
  }
}

// lstat: a sample file lives where FFMPEG_USER writes, and a symlink there must not count some other file's size.
const sizeOf = (file: string) => lstat(file).then((s) => s.size, () => 0);
