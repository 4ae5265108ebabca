import { listExpiredJobIds } from "../../db/queries/lifecycle";
import { purgeJob } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Jobs purged per tick; the rest wait for the next minute, so one tick stays well inside the cron time limit. */
export const EXPIRE_BATCH = 50;

/**
 * Finished jobs (completed, failed, cancelled) whose retention ended: objects first, then rows, so a failure
 * half-way leaves rows that still name the objects for the next tick.
 */
export async function expireFinishedJobs(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const ids = await listExpiredJobIds(deps.db, now, EXPIRE_BATCH);
  let deleted = 0;
  for (const id of ids) if (await purgeJob(deps, id)) deleted++;
  return { expired: deleted };
}
