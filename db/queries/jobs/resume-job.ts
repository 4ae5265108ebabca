import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError } from "../../errors";
import type { QuotaRequest, UserLimits } from "../../limits";
import { jobs, variations, type VariationStatus } from "../../schema";
import { loadRecord } from "./load";
import { presentRecord, type Viewer } from "./present";
import { afterRefusedReopen, assertReopenable, FRESH_VARIATION, HAS_QUEUED_WORK, loadForReopen, reopenGuard, reopenJobStatement, reopenKeyColumns, type Reopened } from "./reopen";

/** What resuming a cancelled job queues again: everything it did not complete. */
const RESUMED: readonly VariationStatus[] = ["cancelled", "failed"];

/**
 * Resume, one batch:
 * - paused → queued/processing: its queued variations become claimable again (nothing else moves; a variation
 *   whose runner is still stopping settles as queued, since the job no longer cancels work).
 * - cancelled → queued/processing: every variation it did not complete (cancelled, and failed: retry refuses a
 *   cancelled job, so resume is the one way to finish it) is queued again (attempts reset), the cancel fields and
 *   the expiry are cleared, and the job continues. The owner's limits apply as for a new job (a paused job already
 *   counts against them).
 * 409 `not_resumable` for other states (`job_active` while active), `nothing_to_resume` for a cancelled job with
 * nothing left to do; 410 after expiry. With `idempotencyKey`, a repeat answers the job (see replayOf).
 */
export async function resumeJob(
  db: Db,
  input: { jobId: string; viewer: Viewer; limits: UserLimits; idempotencyKey?: string | null },
  now: number,
): Promise<Reopened> {
  const { record, idem, replay } = await loadForReopen(db, input, "resume", now);
  if (replay) return replay;
  if (record.job.status !== "paused") {
    assertReopenable(record, ["cancelled"], "not_resumable", "be resumed", now);
  }
  const unfinished = record.variations.filter((v) => RESUMED.includes(v.status)).length;
  if (record.job.status === "cancelled" && unfinished === 0) {
    throw new ConflictError("nothing_to_resume", "Every variation of this job completed", { job: presentRecord(record, now) });
  }
  const request: QuotaRequest = { activeJobs: 1, queuedVariations: unfinished, storageBytes: 0 };
  const keyColumns = reopenKeyColumns(idem, now);
  // Every statement is guarded by the status this request read. A paused job cancelled (and finalized) before the
  // batch ran matched the cancelled-job arm: its cancelled variations were queued again past the owner's limits
  // (the check had counted none) and the cancel the other tab was told about was undone.
  const reopened =
    record.job.status === "paused"
      ? // Already active and counted against the owner's limits: only the job moves.
        await reopenJobStatement(db, input.jobId, input.viewer, eq(jobs.status, "paused"), now, keyColumns)
      : (
          await db.batch([
            db
              .update(variations)
              .set(FRESH_VARIATION)
              .where(
                and(
                  eq(variations.jobId, input.jobId),
                  inArray(variations.status, [...RESUMED]),
                  reopenGuard(input.jobId, record.job.userId, ["cancelled"], input.limits, request, now),
                ),
              ),
            reopenJobStatement(db, input.jobId, input.viewer, and(eq(jobs.status, "cancelled"), HAS_QUEUED_WORK)!, now, keyColumns),
          ])
        )[1];
  if (reopened.length === 0) {
    // Judged against the status this request started from: a paused job cancelled meanwhile is a conflict.
    const allowed = [record.job.status];
    return await afterRefusedReopen(db, { ...input, allowed, code: "not_resumable", verb: "be resumed", request, idem }, now);
  }
  return { job: presentRecord(await loadRecord(db, input.jobId, input.viewer), now), replayed: false };
}
