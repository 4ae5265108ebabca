import { finalizeJob } from "../../db/queries/finalize";
import { recoverExpiredLeases } from "../../db/queries/variations";
import type { LifecycleDeps } from "./index";

/**
 * Variations whose runner died keep `running` with a lapsed lease. When no runner's claim takes them over, this
 * uses the runner's own CAS (requeue, cancel for a cancel-requested job, or fail at the attempt cap), then
 * finalizes the affected jobs, since a failed or cancelled variation may have been the last active one.
 */
export async function recoverLeases(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const jobIds = await recoverExpiredLeases(deps.db, now);
  let finalized = 0;
  for (const id of jobIds) if (await finalizeJob(deps.db, id, now)) finalized++;
  return { jobs: jobIds.length, finalized };
}
