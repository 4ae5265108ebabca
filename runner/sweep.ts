import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../db/client";
import { getJobOutputs } from "../db/queries/variations";
import type { BlobClient } from "./blobs";
import { errorMessage, type Logger } from "./log";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/**
 * Removes local files in WORK_DIR that belong to no variation in hand. Layout: WORK_DIR/<jobId>/…, so anything
 * not under a job in `keepJobIds` goes (at start-up nothing is in hand, so everything goes).
 */
export async function sweepWorkDir(workDir: string, keepJobIds: Set<string>, log: Logger): Promise<number> {
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(workDir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (keepJobIds.has(name)) continue;
    await rm(join(workDir, name), { recursive: true, force: true });
    removed++;
  }
  if (removed) log.info("swept local work files", { entries: removed });
  return removed;
}

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
  const stored = await deps.blobs.list(`outputs/${jobId}/`);
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
