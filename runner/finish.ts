import { outputKey, variationThumbnailKey } from "../db/keys";
import { finishVariation, type ClaimedVariation, type OutputDigest } from "../db/queries/variations";
import { BlobError, CLEANUP_TIMEOUT_MS, isTokenRefused, type BlobClient } from "./blobs";
import { retryDb } from "./db-retry";
import { digestFile } from "./digest";
import { compareSiblings, type Draw } from "./draws";
import { asLocalError, LocalError } from "./local-errors";
import { errorMessage } from "./log";
import { fail, local, stopped, tokenRefused, transient, type Held, type OutcomeContext, type Phase, type TaskOutcome } from "./outcomes";

/** What uploading and recording the kept draw need from the runner (a WorkContext has it all). */
export interface FinishContext extends OutcomeContext {
  blobs: BlobClient;
  /** The edge answered a blob call fine again. */
  onEdgeOk?: () => void;
}

/** The variation in hand being finished: a VariationTask. */
export interface Finishing extends Held {
  readonly claim: Pick<ClaimedVariation, "id" | "jobId" | "sourceId">;
  phase: Phase;
  /** Local lease view, refreshed by each successful heartbeat; past it another runner may own the variation. */
  readonly leaseExpiresAt: number;
  readonly signal: AbortSignal;
}

/**
 * The kept draw, verified and measured: uploaded to this attempt's output key (with its still) and recorded in one
 * compare-and-set with its seed, parameters and figures, while this attempt still owns the variation.
 */
export async function finish(
  ctx: FinishContext,
  task: Finishing,
  kept: Draw,
  redrawReason: string | null,
  timings: Record<string, number>,
): Promise<TaskOutcome> {
  const { log } = ctx;
  const c = task.claim;
  const key = outputKey(c.jobId, c.id, task.attempt);
  const u0 = performance.now();
  let digest: OutputDigest & { bytes: number };
  try {
    digest = await digestFile(kept.file, task.signal);
  } catch (err) {
    if (task.stopReason) return await stopped(ctx, task, null, kept.file);
    // Reading a file this runner just wrote and verified can only fail on this machine: counted, and retried.
    const trouble = asLocalError(err, "reading the output failed") ?? new LocalError("EIO", "reading the output failed", errorMessage(err));
    return await local(ctx, task, trouble, kept.file);
  }
  let size: number;
  try {
    ({ size } = await ctx.blobs.upload(key, kept.file, task.signal, task.own, digest.sha256));
  } catch (err) {
    // Nothing records this attempt's key yet, and no other attempt ever writes it: safe to remove. Bounded: the
    // hand-back of a stop (a shutdown has 7 s) comes after it.
    await ctx.blobs.delete(key, task.own, CLEANUP_TIMEOUT_MS).catch(() => {});
    if (task.stopReason) return await stopped(ctx, task, null, kept.file);
    const trouble = asLocalError(err, "upload failed");
    if (trouble) return await local(ctx, task, trouble, kept.file);
    if (isTokenRefused(err)) return await tokenRefused(ctx, task, `upload failed: ${err.message}`, kept.file);
    // 403: the edge no longer sees this attempt holding the lease. Not the edge's trouble and not the video's:
    // the requeue's ownership check settles whether the lease was lost (nothing recorded) or only ran late.
    if (err instanceof BlobError && err.status === 403) return await transient(ctx, task, `upload failed: ${err.message}`, kept.file);
    // The edge received other bytes than this file's, every time it was sent: nothing says the edge is down.
    if (err instanceof BlobError && err.code === "digest_mismatch") return await transient(ctx, task, `upload failed: ${err.message}`, kept.file);
    if (err instanceof BlobError && !err.transient) return await fail(ctx, task, `upload failed: ${err.message}`, kept.file);
    ctx.onEdgeTrouble?.();
    return await transient(ctx, task, `upload failed: ${errorMessage(err)}`, kept.file);
  }

  ctx.onEdgeOk?.();
  // The digest is recorded for the bytes uploaded (a multipart upload is not checked by R2): a file that changed
  // between the two reads is not recorded.
  if (size !== digest.bytes) {
    await ctx.blobs.delete(key, task.own, CLEANUP_TIMEOUT_MS).catch(() => {});
    return await transient(ctx, task, "upload failed: the output changed while it was uploaded", kept.file);
  }
  const thumbnailKey = await uploadThumbnail(ctx, task, kept);
  timings.upload = performance.now() - u0;
  task.phase = "settle";
  const s0 = performance.now();
  // Keep trying while the lease may still be ours (heartbeats renew it if the database answers them).
  const recorded = await retryDb(
    () => finishVariation(ctx.db, {
        ...task.own,
        outputKey: key,
        outputSize: size,
        digest: { sha256: digest.sha256, crc32: digest.crc32 },
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
    { until: task.leaseExpiresAt },
  );
  if (!recorded) {
    // Another attempt owns the variation (our lease expired). The key is this attempt's own, so deleting it
    // can never remove the object the owner records; the edge also refuses to delete a recorded key.
    log.warn("completion rejected: lease lost; deleting the upload", { variation: c.id, key });
    for (const k of [key, ...(thumbnailKey ? [thumbnailKey] : [])]) {
      await ctx.blobs
        .delete(k, task.own, CLEANUP_TIMEOUT_MS)
        .catch((err) => log.warn("could not delete rejected upload", { key: k, error: errorMessage(err) }));
    }
    return "lost";
  }
  timings.settle = performance.now() - s0;
  if (kept.quality) await compareSiblings(ctx, task, kept.quality.fingerprint);
  const ms = Object.fromEntries(Object.entries(timings).map(([k, v]) => [`${k}_ms`, Math.round(v)]));
  log.info("variation completed", { variation: c.id, job: c.jobId, bytes: size, ...ms });
  return "completed";
}

/** The kept draw's still, to this attempt's thumbnail key (best effort: null when it could not be stored). */
async function uploadThumbnail(ctx: FinishContext, task: Finishing, kept: Draw): Promise<string | null> {
  if (!kept.quality) return null;
  const key = variationThumbnailKey(task.jobId, task.id, task.attempt);
  try {
    await ctx.blobs.upload(key, kept.thumbnail, task.signal, task.own);
    return key;
  } catch (err) {
    ctx.log.warn("variation thumbnail not stored", { variation: task.id, error: errorMessage(err) });
    return null;
  }
}
