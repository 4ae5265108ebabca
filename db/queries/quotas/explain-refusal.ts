import type { Db } from "../../client";
import type { AppError } from "../../errors";
import { exceededQuota, quotaError, type QuotaRequest, type UserLimits } from "../../limits";
import { getUserUsage } from "./get-user-usage";

/** The quota error for an admission its insert refused (see `ownerIfFits`): reads the usage to name the limit. */
export async function explainRefusal(db: Db, userId: string, limits: UserLimits, request: QuotaRequest): Promise<AppError> {
  const usage = await getUserUsage(db, userId);
  return quotaError(exceededQuota(usage, limits, request, "orFirst")!);
}
