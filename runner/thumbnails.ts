import { rm } from "node:fs/promises";
import { join } from "node:path";
import { thumbnailKey } from "../db/keys";
import { setJobThumbnail } from "../db/queries/media";
import type { ClaimedVariation } from "../db/queries/variations";
import { makeThumbnail } from "./ffmpeg";
import { errorMessage } from "./log";
import type { WorkContext } from "./work";
import { FFMPEG_OUT } from "./workdir";

/** Jobs remembered as "thumbnail already attempted"; beyond this the oldest are forgotten (a retry is harmless). */
const MAX_REMEMBERED = 1000;

/**
 * The job's poster frame, from its first source, once per job per runner; best effort (a failure is logged and
 * the job simply has no thumbnail). Not part of the stop sequence: it is one short FFmpeg call with a timeout.
 */
export class Thumbnails {
  /** Insertion-ordered, so the first entries are the oldest. */
  private started = new Set<string>();
  private inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly ctx: () => WorkContext) {}

  ensure(claim: ClaimedVariation): void {
    if (this.started.has(claim.jobId)) return;
    this.started.add(claim.jobId);
    while (this.started.size > MAX_REMEMBERED) this.started.delete(this.started.values().next().value!);
    const p = this.make(claim)
      .catch((err) => this.ctx().log.warn("thumbnail failed", { job: claim.jobId, error: errorMessage(err) }))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async make(claim: ClaimedVariation): Promise<void> {
    const { config, sources, blobs, db, log, workDir } = this.ctx();
    // The edge serves the source and takes the thumbnail only for the claim that asked for it.
    const ticket = { variationId: claim.id, runnerId: config.RUNNER_ID, attempt: claim.attempt };
    const src = await sources.acquire({ sourceId: claim.sourceId, jobId: claim.jobId, key: claim.sourceKey, ticket }, this.abort.signal);
    const file = join(workDir, claim.jobId, FFMPEG_OUT, "thumb.jpg");
    try {
      await makeThumbnail(config.FFMPEG_PATH, src.path, file, src.media, this.abort.signal);
      const key = thumbnailKey(claim.jobId);
      await blobs.upload(key, file, this.abort.signal, ticket);
      if (await setJobThumbnail(db, claim.jobId, key, Date.now())) log.info("thumbnail stored", { job: claim.jobId, key });
    } finally {
      src.release();
      await rm(file, { force: true }).catch(() => {});
    }
  }

  get size(): number {
    return this.started.size;
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
