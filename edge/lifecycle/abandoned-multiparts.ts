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
 * upload API drop whose abort failed) whose abort is due: nobody completed or aborted them within
 * MULTIPART_ABANDON_MS. Aborted, so their parts stop being stored. One already completed or aborted answers "no such
 * upload" (its row outlived it); its row goes. Any other failure postpones that row by ABANDONED_MULTIPART_RETRY_MS
 * and the rule goes on: listed longest due first, a row that kept failing would otherwise stop every later one.
 */
export async function abortAbandonedMultiparts(deps: LifecycleDeps, now: number, budgetMs = ABANDONED_MULTIPARTS_BUDGET_MS): Promise<Record<string, number>> {
  // Elapsed time of this run, not "now" (the rule's business time).
  const started = performance.now();
  const rows = await listAbandonedMultipartUploads(deps.db, now, ABANDONED_MULTIPARTS_PER_TICK);
  const counts = { aborted: 0, gone: 0, failed: 0 };
  for (const row of rows) {
    const outcome = await deps.bucket
      .resumeMultipartUpload(row.objectKey, row.uploadId)
      .abort()
      .then(
        () => "aborted" as const,
        (err) => {
          if (isNoSuchMultipartUpload(err)) return "gone" as const;
          console.error("abandoned multipart upload not aborted; retried later", { key: row.objectKey, error: loggable(err) });
          return "failed" as const;
        },
      );
    counts[outcome]++;
    if (outcome === "failed") await postponeMultipartUpload(deps.db, row.uploadId, now + ABANDONED_MULTIPART_RETRY_MS);
    else await forgetMultipartUpload(deps.db, row);
    if (performance.now() - started > budgetMs) break;
  }
  return counts;
}
