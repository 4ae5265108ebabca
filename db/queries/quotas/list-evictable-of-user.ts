import { and, asc, eq, inArray, lte, sql } from "drizzle-orm";
import type { Db } from "../../client";
import { jobs, uploads, TERMINAL_JOB_STATUSES } from "../../schema";
import { UPLOAD_LAST_USED, type UploadRow } from "../uploads";
import { UNUSED_UPLOAD_STATUSES } from "./usage";

/** When a finished job counts as finished, for eviction: its finish time (or creation, for one that never ran). */
const finishedAt = sql<number>`coalesce(${jobs.completedAt}, ${jobs.createdAt})`;

export interface EvictableOfUser {
  /** Unused uploads (uploading, completed, or aborted and not yet removed) last used at or before the cut, oldest first. */
  uploads: (UploadRow & { bytes: number })[];
  /** Finished jobs finished at or before the cut, oldest finish first, with the bytes each frees. */
  jobs: { id: string; finishedAt: number; bytes: number }[];
}

/**
 * What the storage cap may take from one user (over their quota): their unused uploads and finished jobs that
 * reached `before` (the cap's one-hour floor). Active jobs never appear.
 */
export async function listEvictableOfUser(db: Db, userId: string, before: number, limit: number): Promise<EvictableOfUser> {
  const [ups, js] = await db.batch([
    db
      .select()
      .from(uploads)
      .where(
        and(
          eq(uploads.userId, userId),
          inArray(uploads.status, [...UNUSED_UPLOAD_STATUSES, "aborted"]),
          // Opened, sent to and finished before the cut: a large upload opened over an hour ago may still be sending,
          // or have just finished with its job about to be created.
          lte(UPLOAD_LAST_USED, before),
        ),
      )
      .orderBy(asc(uploads.createdAt), asc(uploads.id))
      .limit(limit),
    db
      .select({
        id: jobs.id,
        finishedAt: finishedAt.mapWith(Number),
        // Aliased: an unqualified "id" in the subquery would bind to the inner table instead of the job.
        sourceBytes: sql<number>`(select coalesce(sum(s.size), 0) from sources s where s.job_id = jobs.id)`.mapWith(Number),
        outputBytes: sql<number>`(select coalesce(sum(v.output_size), 0) from variations v where v.job_id = jobs.id)`.mapWith(Number),
      })
      .from(jobs)
      .where(and(eq(jobs.userId, userId), inArray(jobs.status, [...TERMINAL_JOB_STATUSES]), sql`${finishedAt} <= ${before}`))
      .orderBy(asc(finishedAt), asc(jobs.id))
      .limit(limit),
  ]);
  return {
    // An aborted upload's bytes no longer count as used; dropping it only finishes the cleanup.
    uploads: ups.map((u) => ({ ...u, bytes: u.status === "aborted" ? 0 : u.size })),
    jobs: js.map((j) => ({ id: j.id, finishedAt: j.finishedAt, bytes: j.sourceBytes + j.outputBytes })),
  };
}
