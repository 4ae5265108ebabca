import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError } from "../../errors";
import type { QuotaRequest, UserLimits } from "../../limits";
import { jobs, variations, type JobStatus } from "../../schema";
import { loadRecord } from "./load";
import { presentRecord, type Viewer } from "./present";
import { afterRefusedReopen, assertReopenable, FRESH_VARIATION, HAS_QUEUED_WORK, loadForReopen, reopenGuard, reopenJobStatement, reopenKeyColumns, type Reopened } from "./reopen";

/**
 * A cancelled job is continued with resume (which re-queues what the cancel stopped); retry is for jobs that
 * finished on their own.
 */
const RETRYABLE: readonly JobStatus[] = ["completed", "failed"];

/**
 * Retry failed: the failed variations of a completed or failed job go back to the queue with the same seeds
 * (attempts reset, error/params/output cleared) and the job back to processing — queued if none of it ever started
 * — with its finish time and expiry cleared (the expiry restarts when it finishes again). One batch (see reopen.ts);
 * the owner's limits apply as for a new job. 409 `job_active` / `not_retryable` / `nothing_to_retry`, 410 expired.
 * With `idempotencyKey`, a repeat answers the job (see replayOf).
 */
export async function retryJob(
  db: Db,
  input: { jobId: string; viewer: Viewer; limits: UserLimits; idempotencyKey?: string | null },
  now: number,
): Promise<Reopened> {
  const { record, idem, replay } = await loadForReopen(db, input, "retry", now);
  if (replay) return replay;
  assertReopenable(record, RETRYABLE, "not_retryable", "be retried (resume it instead)", now);
  const failed = record.variations.filter((v) => v.status === "failed").length;
  if (failed === 0) {
    throw new ConflictError("nothing_to_retry", "No variation of this job failed", { job: presentRecord(record, now) });
  }
  const request: QuotaRequest = { activeJobs: 1, queuedVariations: failed, storageBytes: 0 };
  const guard = reopenGuard(input.jobId, record.job.userId, RETRYABLE, input.limits, request, now);
  const [, reopened] = await db.batch([
    db
      .update(variations)
      .set(FRESH_VARIATION)
      .where(and(eq(variations.jobId, input.jobId), eq(variations.status, "failed"), guard)),
    reopenJobStatement(db, input.jobId, input.viewer, and(inArray(jobs.status, [...RETRYABLE]), HAS_QUEUED_WORK)!, now, reopenKeyColumns(idem, now)),
  ]);
  if (reopened.length === 0) {
    return await afterRefusedReopen(
      db,
      { ...input, allowed: RETRYABLE, code: "not_retryable", verb: "be retried (resume it instead)", request, idem },
      now,
    );
  }
  return { job: presentRecord(await loadRecord(db, input.jobId, input.viewer), now), replayed: false };
}
