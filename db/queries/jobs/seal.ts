import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../../client";
import { jobs, TERMINAL_JOB_STATUSES } from "../../schema";

/**
 * Marks a finished job expired (expires_at = 0, before any `now`) so no retry, resume or "more variations" can
 * reopen it (their guards refuse an expired job): the compare-and-set a purge takes before it deletes a single
 * object. Without it a reopen committing between "the cap chose this job" and "its rows are deleted" left an active
 * job whose sources and recorded outputs were gone. Zero and not `now`: the reopen's clock may lag this one. A purge
 * that then fails leaves a job the expiry rule finishes on its next tick. False when the job is not finished (a
 * reopen won) or gone.
 */
export async function sealFinishedJob(db: Db, jobId: string): Promise<boolean> {
  const sealed = await db
    .update(jobs)
    .set({ expiresAt: 0 })
    .where(and(eq(jobs.id, jobId), inArray(jobs.status, [...TERMINAL_JOB_STATUSES])))
    .returning({ id: jobs.id });
  return sealed.length === 1;
}
