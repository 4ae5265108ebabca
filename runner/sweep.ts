import type { Db } from "../db/client";
import { outputPrefix } from "../db/keys";
import { TERMINAL_JOB_STATUSES } from "../db/schema";
import { getJobOutputs } from "../db/queries/variations";
import type { BlobClient } from "./blobs";
import { errorMessage, type Logger } from "./log";

const TERMINAL = new Set<string>(TERMINAL_JOB_STATUSES);

/**
 * Orphan sweep of a job's stored outputs: once the job is terminal, every object under outputs/<jobId>/ that the
 * database does not record is deleted (e.g. an upload that finished after its lease was lost). While the job is
 * active nothing is touched: a runner may be between its upload and its finish. Returns the deleted keys.
 */
export async function sweepJobOutputs(
  deps: { db: Db; blobs: BlobClient; log: Logger },
  jobId: string,
): Promise<{ terminal: boolean; deleted: string[] }> {
  const job = await getJobOutputs(deps.db, jobId);
  // A job that is gone (deleted, expired) is terminal too: none of its objects are recorded any more.
  if (job && !TERMINAL.has(job.status)) return { terminal: false, deleted: [] };
  const recorded = new Set(job?.outputKeys ?? []);
  const stored = await deps.blobs.list(outputPrefix(jobId));
  const deleted: string[] = [];
  for (const o of stored) {
    if (recorded.has(o.key)) continue;
    try {
      await deps.blobs.delete(o.key);
      deleted.push(o.key);
    } catch (err) {
      deps.log.warn("could not delete orphan output", { key: o.key, error: errorMessage(err) });
    }
  }
  if (deleted.length) deps.log.info("deleted orphan outputs", { job: jobId, count: deleted.length });
  return { terminal: true, deleted };
}
