import type { Db } from "../../db/client";
import { GoneError } from "../../db/errors";
import type { UserLimits } from "../../db/limits";
import { addVariations, getJobSourceKeys, resumeJob, retryJob, type Reopened, type Viewer } from "../../db/queries/jobs";

interface Deps {
  db: Db;
  bucket: R2Bucket;
}
interface Input {
  jobId: string;
  viewer: Viewer;
  limits: UserLimits;
  /** The request's Idempotency-Key: a repeat answers the job (`replayed`) instead of 409 or a second reopen. */
  idempotencyKey: string | null;
}

/**
 * Before putting work back into a job: every source object must still be in the bucket, or runners would be handed
 * variations nobody can encode. Sources live as long as their job (deleted with it, at expiry or eviction), so a
 * missing one is rare: 410 `source_gone`. An expired job is 410 `expired`, another user's 404.
 */
export async function assertSourcesStored(deps: Deps, input: { jobId: string; viewer: Viewer }, now: number): Promise<void> {
  const keys = await getJobSourceKeys(deps.db, input, now);
  const heads = await Promise.all(keys.map((k) => deps.bucket.head(k)));
  if (heads.some((h) => h === null)) {
    throw new GoneError("A source video of this job is no longer stored", "source_gone");
  }
}

/** POST /api/jobs/:id/retry: the sources are checked, then the failed variations re-queued (db/queries/jobs). */
export async function retryFailed(deps: Deps, input: Input, now: number): Promise<Reopened> {
  await assertSourcesStored(deps, input, now);
  return retryJob(deps.db, input, now);
}

/** POST /api/jobs/:id/resume (paused or cancelled job). */
export async function resume(deps: Deps, input: Input, now: number): Promise<Reopened> {
  await assertSourcesStored(deps, input, now);
  return resumeJob(deps.db, input, now);
}

/** POST /api/jobs/:id/more. */
export async function moreVariations(deps: Deps, input: Input & { perSource: number }, now: number): Promise<Reopened> {
  await assertSourcesStored(deps, input, now);
  return addVariations(deps.db, input, now);
}
