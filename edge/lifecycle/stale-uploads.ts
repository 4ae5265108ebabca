import { listStaleUploads } from "../../db/queries/uploads";
import { dropUnusedUpload } from "../lib/uploads";
import type { LifecycleDeps } from "./index";

/**
 * Large-file uploads never turned into a job within JOB_TTL_HOURS: the R2 multipart upload is aborted (or the
 * completed object deleted) and the row removed (`dropUnusedUpload`: CAS to aborted first, so a job created at the
 * same moment either consumed it first and it is skipped, or cannot consume it any more).
 */
export async function abortStaleUploads(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const ttlMs = deps.config.JOB_TTL_HOURS * 60 * 60 * 1000;
  const stale = await listStaleUploads(deps.db, now - ttlMs, 100);
  let aborted = 0;
  for (const upload of stale) {
    if (await dropUnusedUpload(deps, upload)) aborted++;
  }
  return { aborted };
}
