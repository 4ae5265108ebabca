import { finalizeJobs } from "../../db/queries/finalize";
import { cancelQueuedVariationsOfCancellingJobs, listIdleActiveJobIds } from "../../db/queries/lifecycle";
import type { LifecycleDeps } from "./index";

const FINALIZE_BATCH = 200;

/**
 * Jobs left processing/cancelling with nothing queued or running (e.g. the runner that finished the last variation
 * crashed before finalizing): finalizeJobs decides their terminal status with its usual rules, in one statement.
 */
export async function finalizeIdleJobs(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const swept = await cancelQueuedVariationsOfCancellingJobs(deps.db, now);
  const ids = await listIdleActiveJobIds(deps.db, FINALIZE_BATCH);
  const finalized = (await finalizeJobs(deps.db, ids, now)).length;
  return { finalized, cancelledQueued: swept };
}
