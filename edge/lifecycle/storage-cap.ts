import { listEvictableJobs, storedBytes } from "../../db/queries/objects";
import { purgeJob } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Eviction stops once usage is at or below this share of STORAGE_LIMIT_BYTES (hysteresis: no evict-every-tick). */
export const STORAGE_TARGET_RATIO = 0.85;

/** Over STORAGE_LIMIT_BYTES: evict the oldest finished jobs until usage is under 85 % of the limit. */
export async function enforceStorageCap(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  void now;
  let used = await storedBytes(deps.db);
  const limit = deps.config.STORAGE_LIMIT_BYTES;
  if (used <= limit) return { evicted: 0, usedBytes: used };
  const target = limit * STORAGE_TARGET_RATIO;
  let evicted = 0;
  while (used > target) {
    const batch = await listEvictableJobs(deps.db, 20);
    let progressed = false;
    for (const job of batch) {
      if (used <= target) break;
      if (await purgeJob(deps, job.id)) {
        used -= job.bytes;
        evicted++;
        progressed = true;
      }
    }
    // Nothing evictable left (only active jobs), or nothing could be purged this round: stop, retry next tick.
    if (!progressed) break;
  }
  return { evicted, usedBytes: used };
}
