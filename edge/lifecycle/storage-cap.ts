import { listEvictableJobs, storageUsage } from "../../db/queries/objects";
import { purgeJob } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Eviction stops once usage is at or below this share of STORAGE_LIMIT_BYTES (hysteresis: no evict-every-tick). */
export const STORAGE_TARGET_RATIO = 0.85;
/** A job finished less than this long ago is never evicted: its owner has not had a chance to download it. */
export const EVICT_MIN_AGE_MS = 60 * 60 * 1000;

/**
 * Over STORAGE_LIMIT_BYTES: evict the oldest finished jobs (finished at least EVICT_MIN_AGE_MS ago) until usage is
 * under 85 % of the limit. Bytes it cannot free (active and young jobs, uploads) never cause an eviction: when they
 * alone are above the target, it only evicts down to the limit itself, and when they alone are at or above the
 * limit, evicting would delete finished work without bringing usage under it, so it evicts nothing.
 */
export async function enforceStorageCap(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const finishedBefore = now - EVICT_MIN_AGE_MS;
  const usage = await storageUsage(deps.db, finishedBefore);
  let used = usage.usedBytes;
  const limit = deps.config.STORAGE_LIMIT_BYTES;
  const unfreeable = used - usage.freeableBytes;
  if (used <= limit || unfreeable >= limit) return { evicted: 0, usedBytes: used, unfreeableBytes: unfreeable };
  const target = limit * STORAGE_TARGET_RATIO;
  const goal = unfreeable <= target ? target : limit;
  let evicted = 0;
  while (used > goal) {
    const batch = await listEvictableJobs(deps.db, finishedBefore, 20);
    let progressed = false;
    for (const job of batch) {
      if (used <= goal) break;
      if (await purgeJob(deps, job.id)) {
        used -= job.bytes;
        evicted++;
        progressed = true;
      }
    }
    // Nothing evictable left, or nothing could be purged this round: stop, retry next tick.
    if (!progressed) break;
  }
  return { evicted, usedBytes: used, unfreeableBytes: unfreeable };
}
