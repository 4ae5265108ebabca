import type { Db } from "../../db/client";
import { pauseJob, type JobView, type Viewer } from "../../db/queries/jobs";
import { waitForJob } from "./wait-job";

export interface PauseResult {
  job: JobView;
  /** True when nothing of the job runs any more (reply 200), false while runners are still stopping (reply 202). */
  settled: boolean;
}

/** Running variations left: their runners have not settled the stop yet. */
const running = (job: JobView) => job.files.some((f) => f.variations?.some((v) => v.status === "running"));

/**
 * Pauses one job and waits up to `waitMs` for its runners to stop (same stop sequence and wait as a cancel).
 * Settled once nothing runs, or once the job left `paused` meanwhile (finished, resumed, cancelled).
 */
export async function pauseAndWait(
  db: Db,
  input: { jobId: string; viewer: Viewer },
  opts: { now: number; waitMs: number; pollMs?: number },
): Promise<PauseResult> {
  const { job: first, previousStatus } = await pauseJob(db, input, opts.now);
  const done = (job: JobView) => job.status !== "paused" || !running(job);
  const job = await waitForJob(db, input, first, done, opts);
  return { job: { ...job, previousStatus }, settled: done(job) };
}
