import { DISABLED_WORK_HOLD_MS } from "../../db/limits";
import { cancelJobsOfDisabledAccounts } from "../../db/queries/lifecycle";
import type { LifecycleDeps } from "./index";

/** A disabled account's held jobs end after DISABLED_WORK_HOLD_MS (cancelled; finalizeIdleJobs finishes them). */
export async function endDisabledAccountsWork(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const cancelled = await cancelJobsOfDisabledAccounts(deps.db, now - DISABLED_WORK_HOLD_MS, now);
  return { cancelled: cancelled.length };
}
