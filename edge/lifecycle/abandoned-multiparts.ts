import { MULTIPART_ABANDON_MS } from "../../db/limits";
import { loggable } from "../../db/errors";
import { forgetMultipartUpload, listAbandonedMultipartUploads, postponeMultipartUpload } from "../../db/queries/multiparts";
import { isNoSuchMultipartUpload } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Uploads looked at per tick, and the wall time one tick spends on them. */
export const ABANDONED_MULTIPARTS_PER_TICK = 100;
export const ABANDONED_MULTIPARTS_BUDGET_MS = 10_000;

/** How long a row whose abort failed waits before the next try. */
export const ABANDONED_MULTIPART_RETRY_MS = 60 * 60 * 1000;

/**
 * Multipart uploads on record (multipart_uploads: opened by the edge for a runner or a form upload, or left by an
 * upload API drop whose abort failed) that nobody completed or aborted within MULTIPART_ABANDON_MS: aborted, so their
 * parts stop being stored. One already completed or aborted answers "no such upload" (its row outlived it); its row
 * goes. Any other failure postpones that row by ABANDONED_MULTIPART_RETRY_MS and the rule goes on: the listing is
 * oldest first, so a row that kept failing would otherwise stop every later one for good.
 */
export async function abortAbandonedMultiparts(deps: LifecycleDeps, now: number, budgetMs = ABANDONED_MULTIPARTS_BUDGET_MS): Promise<Record<string, number>> {
  // Elapsed time of this run, not "now" (the rule's business time).
  const started = performance.now();
  const rows = await listAbandonedMultipartUploads(deps.db, now - MULTIPART_ABANDON_MS, ABANDONED_MULTIPARTS_PER_TICK);
  let aborted = 0;
  let gone = 0;
  let failed = 0;
  for (const row of rows) {
    try {
      await deps.bucket.resumeMultipartUpload(row.objectKey, row.uploadId).abort();
      aborted++;
      await forgetMultipartUpload(deps.db, row.uploadId);
    } catch (err) {
      if (isNoSuchMultipartUpload(err)) {
        gone++;
        await forgetMultipartUpload(deps.db, row.uploadId);
      } else {
        failed++;
        console.error("abandoned multipart upload not aborted; retried later", { key: row.objectKey, error: loggable(err) });
        await postponeMultipartUpload(deps.db, row.uploadId, now - MULTIPART_ABANDON_MS + ABANDONED_MULTIPART_RETRY_MS);
      }
    }
    if (performance.now() - started > budgetMs) break;
  }
  return { aborted, gone, failed };
}
