import { listStaleUploads } from "../../db/queries/uploads";
import { dropUnusedUpload } from "../lib/uploads";
import type { LifecycleDeps } from "./index";

/**
 * Large-file uploads not used (opened, sent a part, completed) for JOB_TTL_HOURS and never turned into a job: the R2
 * multipart upload is aborted (or the completed object deleted) and the row removed (`dropUnusedUpload`: CAS to
 * aborted first, so a job created at the same moment either consumed it first and it is skipped, or cannot consume
 * it any more). Counted from the last use, not the opening: a 2 GiB upload on a slow line can take longer than
 * JOB_TTL_HOURS, and aborting it mid-part threw its sent parts away.
 */
export async function abortStaleUploads(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const ttlMs = deps.config.JOB_TTL_HOURS * 60 * 60 * 1000;
  const before = now - ttlMs;
  const stale = await listStaleUploads(deps.db, before, 100);
  let aborted = 0;
  for (const upload of stale) {
    // The listing is re-checked in the CAS: a part or a complete between the two keeps the upload.
    if (await dropUnusedUpload(deps, upload, before)) aborted++;
  }
  return { aborted };
}
