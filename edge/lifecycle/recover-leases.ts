import { recoverExpiredLeases } from "../../db/queries/variations";
import type { LifecycleDeps } from "./index";

/**
 * Variations whose runner died keep `running` with a lapsed lease. When no runner's claim takes them over, this
 * uses the runner's own rules (requeue, cancel for a cancel-requested job, or fail at the attempt cap); the query
 * finalizes the jobs it touched, like every query that moves variations.
 */
export async function recoverLeases(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const { jobIds, finalized } = await recoverExpiredLeases(deps.db, now);
  return { jobs: jobIds.length, finalized: finalized.length };
}
