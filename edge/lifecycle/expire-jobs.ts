import { listExpiredJobIds } from "../../db/queries/lifecycle";
import { purgeJob } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Jobs purged per batch. */
export const EXPIRE_BATCH = 50;
/**
 * Wall time one tick spends on expiry before it leaves the rest to the next minute: it catches up with a backlog
 * (a day of one user's short-lived jobs came due at 50 a minute for hours) and stays well inside the cron's limits.
 */
export const EXPIRE_BUDGET_MS = 15_000;

/**
 * Finished jobs (completed, failed, cancelled) whose retention ended: objects first, then rows, so a failure
 * half-way leaves rows that still name the objects for the next tick. Batch after batch, every user's oldest first
 * (listExpiredJobIds), until none is left or the budget is spent.
 */
export async function expireFinishedJobs(deps: LifecycleDeps, now: number, budgetMs = EXPIRE_BUDGET_MS): Promise<Record<string, number>> {
  // Elapsed time of this run, not "now": the rules take their business time as an argument.
  const started = performance.now();
  let deleted = 0;
  const spent = () => performance.now() - started > budgetMs;
  for (;;) {
    const ids = await listExpiredJobIds(deps.db, now, EXPIRE_BATCH);
    let batch = 0;
    // The budget is checked after every job, not every batch: each purge is several database and R2 round trips in
    // a row, so a slow database or bucket made one batch of 50 last minutes, and the rules after this one waited.
    for (const id of ids) {
      if (await purgeJob(deps, id, { expiredBy: now })) batch++;
      if (spent()) break;
    }
    deleted += batch;
    // A batch that removed nothing would come back the same: stop (the next tick retries).
    if (ids.length < EXPIRE_BATCH || batch === 0 || spent()) break;
  }
  return { expired: deleted };
}
