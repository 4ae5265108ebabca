import { listStaleUploads } from "../../db/queries/uploads";
import { dropUnusedUpload } from "../lib/uploads";
import type { LifecycleDeps } from "./index";

/** Wall time one tick spends dropping stale uploads; the rest waits for the next minute. */
export const STALE_UPLOADS_BUDGET_MS = 10_000;

/**
 * Large-file uploads not used (opened, sent a part, completed) for JOB_TTL_HOURS and never turned into a job: the R2
 * multipart upload is aborted (or the completed object deleted) and the row removed (`dropUnusedUpload`: CAS to
 * aborted first, so a job created at the same moment either consumed it first and it is skipped, or cannot consume
 * it any more). Counted from the last use, not the opening: a 2 GiB upload on a slow line can take longer than
 * JOB_TTL_HOURS, and aborting it mid-part threw its sent parts away.
 */
export async function abortStaleUploads(deps: LifecycleDeps, now: number, budgetMs = STALE_UPLOADS_BUDGET_MS): Promise<Record<string, number>> {
  const ttlMs = deps.config.JOB_TTL_HOURS * 60 * 60 * 1000;
  const before = now - ttlMs;
  // Elapsed time of this run, not "now" (the rule's business time).
  const started = performance.now();
  const stale = await listStaleUploads(deps.db, before, 100);
  let aborted = 0;
  for (const upload of stale) {
    // The listing is re-checked in the CAS: a part or a complete between the two keeps the upload.
    if (await dropUnusedUpload(deps, upload, before)) aborted++;
    // Each drop is a few database and R2 round trips: against a slow one, 100 of them held the rules after this.
    if (performance.now() - started > budgetMs) break;
  }
  return { aborted };
}
