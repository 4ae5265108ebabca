import type { Db } from "../../client";
import type { AppError } from "../../errors";
import { exceededQuota, quotaError, type QuotaRequest, type UserLimits } from "../../limits";
import { getUserUsage } from "./get-user-usage";

/**
 * The quota error for an admission its insert refused (see `ownerIfFits`): reads the usage to name the limit.
 * `exceptIngest`: the form upload whose own room the refused statement left out.
 */
export async function explainRefusal(db: Db, userId: string, limits: UserLimits, request: QuotaRequest, exceptIngest?: string): Promise<AppError> {
  const usage = await getUserUsage(db, userId, exceptIngest);
  return quotaError(exceededQuota(usage, limits, request, "orFirst")!);
}
