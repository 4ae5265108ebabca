import { failStaleQueuedJobs } from "../../db/queries/lifecycle";
import type { LifecycleDeps } from "./index";

/** A job no runner picked up within JOB_TTL_HOURS fails ("expired while queued") instead of waiting forever. */
export async function failStaleQueued(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const ttlMs = deps.config.JOB_TTL_HOURS * 60 * 60 * 1000;
  const failed = await failStaleQueuedJobs(deps.db, now - ttlMs, now);
  return { failed: failed.length };
}
