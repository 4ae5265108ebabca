import type { Db } from "../../db/client";
import { ConflictError, NotFoundError } from "../../db/errors";
import { isTerminal, requestCancel, type JobView, type Viewer } from "../../db/queries/jobs";
import { waitForJob } from "./wait-job";

export interface CancelResult {
  job: JobView;
  /** True when the job reached a terminal state (reply 200), false while it is still cancelling (reply 202). */
  settled: boolean;
}

/**
 * Cancels one job and waits up to `waitMs` for it to reach a terminal state, polling the database (runners
 * report through it; see waitForJob). Completed/failed jobs are a ConflictError carrying the job.
 */
export async function cancelJob(
  db: Db,
  input: { jobId: string; viewer: Viewer; reason?: string | null },
  opts: { now: number; waitMs: number; pollMs?: number },
): Promise<CancelResult> {
  const outcome = await requestCancel(db, input, opts.now);
  if (outcome.kind === "not_found") throw new NotFoundError("No such job");
  const { previousStatus } = outcome;
  if (outcome.kind === "not_cancellable") {
    throw new ConflictError("not_cancellable", `A ${previousStatus} job cannot be cancelled`, { job: outcome.job });
  }
  const done = (job: JobView) => isTerminal(job.status);
  const job = await waitForJob(db, { jobId: input.jobId, viewer: input.viewer }, outcome.job, done, opts);
  return { job: { ...job, previousStatus }, settled: isTerminal(job.status) };
}
