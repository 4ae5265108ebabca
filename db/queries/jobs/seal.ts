import { and, eq, inArray, isNotNull, lte, sql, type SQL } from "drizzle-orm";
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
export async function sealFinishedJob(db: Db, jobId: string, still: PurgeReason = {}): Promise<boolean> {
  const sealed = await db
    .update(jobs)
    .set({ expiresAt: 0 })
    .where(and(eq(jobs.id, jobId), inArray(jobs.status, [...TERMINAL_JOB_STATUSES]), ...reasonHolds(still)))
    .returning({ id: jobs.id });
  return sealed.length === 1;
}

/**
 * Why a rule chose the job, checked again in the seal: the job may have been reopened and finished again since the
 * rule listed it — then it is a new finish, with a new expiry and a new hour of protection from the storage cap,
 * and purging it deleted a job that finished seconds ago.
 */
export interface PurgeReason {
  /** The storage cap: finished (or created, if it never ran) at or before this time. */
  finishedBy?: number;
  /** The expiry rule: its expiry is at or before this time (a sealed job's 0 included). */
  expiredBy?: number;
}

function reasonHolds(r: PurgeReason): SQL[] {
  const out: SQL[] = [];
  if (r.finishedBy !== undefined) out.push(sql`coalesce(${jobs.completedAt}, ${jobs.createdAt}) <= ${r.finishedBy}`);
  if (r.expiredBy !== undefined) out.push(and(isNotNull(jobs.expiresAt), lte(jobs.expiresAt, r.expiredBy))!);
  return out;
}
