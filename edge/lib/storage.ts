import type { Db } from "../../db/client";
import { sealFinishedJob, type PurgeReason } from "../../db/queries/jobs/seal";
import { deleteFinishedJobRows, jobObjectKeys } from "../../db/queries/objects";

/** R2 multipart parts: every part but the last must be ≥ 5 MiB and all the same size; 8 MiB keeps memory low. */
export const PART_BYTES = 8 * 1024 * 1024;
/** R2 allows at most 10,000 parts per multipart upload. */
export const MAX_PARTS = 10_000;

import { outputPrefix, sourceKey, thumbnailKey } from "../../db/keys";
export { outputPrefix, sourceKey, uploadKey } from "../../db/keys";

/** Part size for a client-driven upload of `size` bytes: 8 MiB, larger only when 10,000 parts would not do. */
export function partSizeFor(size: number): number {
  const mib = 1024 * 1024;
  return Math.max(PART_BYTES, Math.ceil(size / MAX_PARTS / mib) * mib);
}

/**
 * R2 throws plain errors (no code property) for a multipart upload that was completed or aborted: "The specified
 * multipart upload does not exist. (10024)" (NoSuchUpload). Other errors, e.g. 10001 "internal error, try again",
 * stay errors: they say nothing about the upload being gone.
 */
export function isNoSuchMultipartUpload(err: unknown): boolean {
  return /\(10024\)|NoSuchUpload|multipart upload does not exist/i.test(err instanceof Error ? err.message : String(err));
}

/** R2 refused a complete() because a part's ETag is not the one it holds for that part number (InvalidPart). */
export function isInvalidPart(err: unknown): boolean {
  return /\(10025\)|InvalidPart|specified parts could not be found/i.test(err instanceof Error ? err.message : String(err));
}

/** Deletes keys in R2's batches of at most 1,000. */
export async function deleteKeys(bucket: R2Bucket, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) await bucket.delete(keys.slice(i, i + 1000));
}

/** Every key under a prefix (paged through R2's list cursor). */
export async function listKeys(bucket: R2Bucket, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, cursor });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys;
}

/**
 * Removes a finished job: sealed first (no reopen can make it active any more; one that already did leaves the job
 * untouched), then objects (recorded keys plus anything under its output and source prefixes, e.g. an upload that
 * landed after a lost lease, and its thumbnail key even when no row records it, e.g. a thumbnail stored after the
 * job was cancelled), then the rows. If the object deletion fails the rows stay, so the next attempt (the expiry
 * rule: a sealed job is expired) still knows the keys. True when the rows were deleted.
 */
export async function purgeJob(deps: { db: Db; bucket: R2Bucket }, jobId: string, still?: PurgeReason): Promise<boolean> {
  if (!(await sealFinishedJob(deps.db, jobId, still))) return false;
  const recorded = await jobObjectKeys(deps.db, jobId);
  const stray = [
    ...(await listKeys(deps.bucket, outputPrefix(jobId))),
    ...(await listKeys(deps.bucket, sourceKey(jobId, ""))),
    thumbnailKey(jobId),
  ];
  await deleteKeys(deps.bucket, [...new Set([...recorded, ...stray])]);
  return deleteFinishedJobRows(deps.db, jobId);
}
