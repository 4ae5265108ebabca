import { userLimitsFrom } from "../../db/limits";
import { getStorageBytes, listEvictableOfUser, listStorageByUser } from "../../db/queries/quotas";
import { purgeJob } from "../lib/storage";
import { dropUnusedUpload } from "../lib/uploads";
import type { LifecycleDeps } from "./index";

/** Eviction stops once usage is at or below this share of STORAGE_LIMIT_BYTES (hysteresis: no evict-every-tick). */
export const STORAGE_TARGET_RATIO = 0.85;
/** A job finished (or an upload started) less than this long ago is never evicted: its owner has not had a chance to use it. */
export const EVICT_MIN_AGE_MS = 60 * 60 * 1000;
/** How many evictable items of one user are looked at per tick. */
const PER_USER_BATCH = 500;
/**
 * Wall time one tick spends evicting before it leaves the rest to the next minute (like expiry's budget): a backlog
 * (a lowered quota makes thousands of jobs evictable at once) ran on until the platform ended the tick, and the rules
 * after this one (orphans, stale uploads, sessions, runners) did not run, minute after minute.
 */
export const CAP_BUDGET_MS = 15_000;

interface Candidate {
  kind: "upload" | "job";
  userId: string;
  bytes: number;
  /** Oldest first, within its kind. */
  since: number;
  /** Removes it; false when it changed meanwhile (a job consumed the upload) and stays. */
  drop(): Promise<boolean>;
}

/**
 * Over STORAGE_LIMIT_BYTES, the cap takes only from users over their own quota (USER_STORAGE_BYTES) — a user
 * within quota never loses anything to it, whatever others upload, so no user's action can evict another's job
 * before its expiry. From those users it takes, while each one is still over quota: first their unused uploads
 * (oldest first), then their finished jobs (oldest finish first, across those users), never anything younger than
 * EVICT_MIN_AGE_MS, until usage is under 85 % of the limit. Bytes it cannot free (active and young jobs, young
 * uploads, everything of users within quota) never cause an eviction: when they alone are above the target, it only
 * evicts down to the limit itself, and when they alone are at or above the limit, it evicts nothing.
 *
 * Quotas are checked on admission, so a user goes over theirs only through outputs their admitted jobs produced
 * (or a lowered quota). When the quotas together exceed the global limit and everyone is within quota, usage may
 * stay above STORAGE_LIMIT_BYTES: the report says so (`unfreeableBytes`), and the operator sizes the quota.
 */
export async function enforceStorageCap(deps: LifecycleDeps, now: number, budgetMs = CAP_BUDGET_MS): Promise<Record<string, number>> {
  // Elapsed time of this run, not "now": the rules take their business time as an argument.
  const started = performance.now();
  const before = now - EVICT_MIN_AGE_MS;
  const quota = userLimitsFrom(deps.config).storageBytes;
  const byUser = await listStorageByUser(deps.db);
  let used = byUser.reduce((n, u) => n + u.bytes, 0);
  const limit = deps.config.STORAGE_LIMIT_BYTES;
  if (used <= limit) return { evicted: 0, uploadsFreed: 0, usedBytes: used, unfreeableBytes: 0 };

  // What may go: per over-quota user, their evictable items in the order they would go, each only while that user
  // is still over quota (simulated here, so `freeable` is exactly what the loop below can free).
  const held = new Map<string, number>();
  const uploads: Candidate[] = [];
  const jobs: Candidate[] = [];
  let freeable = 0;
  const overQuota = byUser.filter((u) => u.bytes > quota);
  for (const [i, user] of overQuota.entries()) {
    // The budget holds here too: with many users over quota (a lowered quota) the listing alone outran it, and the
    // eviction loop below, finding it spent, then evicted nothing anyway. Nothing is evicted on a partial listing:
    // what it leaves out cannot be weighed, and the next tick lists afresh.
    if (performance.now() - started >= budgetMs) {
      return { evicted: 0, uploadsFreed: 0, usedBytes: used, usersNotListed: overQuota.length - i };
    }
    held.set(user.userId, user.bytes);
    const items = await listEvictableOfUser(deps.db, user.userId, before, PER_USER_BATCH);
    let left = user.bytes;
    for (const upload of items.uploads) {
      if (left <= quota) break;
      const drop = () => dropUnusedUpload(deps, upload, before);
      uploads.push({ kind: "upload", userId: user.userId, bytes: upload.bytes, since: upload.createdAt, drop });
      left -= upload.bytes;
    }
    for (const job of items.jobs) {
      if (left <= quota) break;
      jobs.push({ kind: "job", userId: user.userId, bytes: job.bytes, since: job.finishedAt, drop: () => purgeJob(deps, job.id, { finishedBy: before }) });
      left -= job.bytes;
    }
    freeable += user.bytes - left;
  }
  const unfreeable = used - freeable;
  if (unfreeable >= limit) return { evicted: 0, uploadsFreed: 0, usedBytes: used, unfreeableBytes: unfreeable };
  const target = limit * STORAGE_TARGET_RATIO;
  const goal = unfreeable <= target ? target : limit;

  // Unused uploads before any job; jobs oldest finish first whoever owns them (among users over quota).
  uploads.sort((a, b) => a.since - b.since);
  jobs.sort((a, b) => a.since - b.since);
  let evicted = 0;
  let uploadsFreed = 0;
  // The owner's bytes are read again before each drop and after a drop that found its item changed: the owner may
  // have deleted jobs or uploads since the list above, or an overlapping tick (a slow one runs into the next
  // minute) may have evicted the same items. Counting on the first read, the cap went on evicting until its own
  // sums said "done": up to twice the excess, and jobs of a user already back within quota.
  const refresh = async (userId: string) => {
    const now = await getStorageBytes(deps.db, userId);
    used -= held.get(userId)! - now;
    held.set(userId, now);
  };
  for (const c of [...uploads, ...jobs]) {
    if (used <= goal || performance.now() - started >= budgetMs) break;
    if (held.get(c.userId)! <= quota) continue;
    await refresh(c.userId);
    if (used <= goal) break;
    if (held.get(c.userId)! <= quota) continue;
    if (!(await c.drop())) {
      await refresh(c.userId);
      continue;
    }
    used -= c.bytes;
    held.set(c.userId, held.get(c.userId)! - c.bytes);
    if (c.kind === "upload") uploadsFreed++;
    else evicted++;
  }
  return { evicted, uploadsFreed, usedBytes: used, unfreeableBytes: unfreeable };
}
