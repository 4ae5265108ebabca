import type { Db } from "../../db/client";
import { getJob, type JobView, type Viewer } from "../../db/queries/jobs";

/**
 * Polls the job (runners report through the database) until `done(job)` or `waitMs` is up; returns the last read.
 * How long a request may hold on before answering 202 is HTTP behaviour, which is why it lives in the edge.
 */
export async function waitForJob(
  db: Db,
  input: { jobId: string; viewer: Viewer },
  job: JobView,
  done: (job: JobView) => boolean,
  opts: { waitMs: number; pollMs?: number },
): Promise<JobView> {
  const deadline = Date.now() + opts.waitMs;
  while (!done(job) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 200, Math.max(0, deadline - Date.now()))));
    job = await getJob(db, input, Date.now());
  }
  return job;
}
