import { MULTIPART_ABANDON_MS } from "../../db/limits";
import { forgetMultipartUpload, listAbandonedMultipartUploads } from "../../db/queries/multiparts";
import { isNoSuchMultipartUpload } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Uploads looked at per tick, and the wall time one tick spends on them. */
export const ABANDONED_MULTIPARTS_PER_TICK = 100;
export const ABANDONED_MULTIPARTS_BUDGET_MS = 10_000;

/**
 * Multipart uploads the edge opened for a runner or a form upload (multipart_uploads) and nobody completed or aborted
 * within MULTIPART_ABANDON_MS: aborted, so their parts stop being stored. One already completed or aborted answers "no
 * such upload" (its row outlived it); its row goes. Any other failure keeps the row for the next tick.
 */
export async function abortAbandonedMultiparts(deps: LifecycleDeps, now: number, budgetMs = ABANDONED_MULTIPARTS_BUDGET_MS): Promise<Record<string, number>> {
  // Elapsed time of this run, not "now" (the rule's business time).
  const started = performance.now();
  const rows = await listAbandonedMultipartUploads(deps.db, now - MULTIPART_ABANDON_MS, ABANDONED_MULTIPARTS_PER_TICK);
  let aborted = 0;
  let gone = 0;
  for (const row of rows) {
    try {
      await deps.bucket.resumeMultipartUpload(row.objectKey, row.uploadId).abort();
      aborted++;
    } catch (err) {
      if (!isNoSuchMultipartUpload(err)) throw err;
      gone++;
    }
    await forgetMultipartUpload(deps.db, row.uploadId);
    if (performance.now() - started > budgetMs) break;
  }
  return { aborted, gone };
}
