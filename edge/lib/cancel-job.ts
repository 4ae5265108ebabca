import type { Db } from "../../db/client";
import { ConflictError, NotFoundError } from "../../db/errors";
import { getJob, isTerminal, requestCancel, type JobView, type Viewer } from "../../db/queries/jobs";

export interface CancelResult {
  job: JobView;
  /** True when the job reached a terminal state (reply 200), false while it is still cancelling (reply 202). */
  settled: boolean;
}

/**
 * Cancels one job and waits up to `waitMs` for it to reach a terminal state, polling the database (runners
 * report through it). Completed/failed jobs are a ConflictError carrying the job. The wait is HTTP behaviour (how
 * long a request may hold on before answering 202), which is why it lives here and not in db/.
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
  let job = outcome.job;
  const deadline = Date.now() + opts.waitMs;
  while (!isTerminal(job.status) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 200, Math.max(0, deadline - Date.now()))));
    job = await getJob(db, { jobId: input.jobId, viewer: input.viewer }, Date.now());
  }
  return { job: { ...job, previousStatus }, settled: isTerminal(job.status) };
}
