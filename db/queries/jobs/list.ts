import { and, count, desc, eq, inArray, lt, or, sql } from "drizzle-orm";
import type { Db } from "../../client";
import { ValidationError } from "../../errors";
import { jobs, sources, variations, type JobStatus } from "../../schema";
import { estimateQueue, type OwnWork, type QueueSnapshotSource } from "./estimate-queue";
import { ownedBy } from "./load";
import { presentJob, type JobView, type Viewer } from "./present";

export const JOB_PAGE_MAX = 100;

function encodeCursor(job: { createdAt: number; id: string }): string {
  return btoa(`${job.createdAt}:${job.id}`).replace(/=+$/, "");
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  let text: string;
  try {
    text = atob(cursor);
  } catch {
    throw new ValidationError("cursor: not a cursor returned by this API", "cursor");
  }
  const m = /^(\d{1,16}):([0-9a-z]{1,40})$/.exec(text);
  if (!m) throw new ValidationError("cursor: not a cursor returned by this API", "cursor");
  return { createdAt: Number(m[1]), id: m[2]! };
}

/** Newest first, keyset-paginated on (created_at, id) so pages stay stable while jobs are added. */
export async function listJobs(
  db: Db,
  input: { viewer: Viewer; status?: JobStatus; limit: number; cursor?: string },
  now: number,
  queue?: QueueSnapshotSource,
): Promise<{ jobs: JobView[]; nextCursor: string | null }> {
  const after = input.cursor ? decodeCursor(input.cursor) : undefined;
  const onPage = and(
    ownedBy(input.viewer),
    input.status ? eq(jobs.status, input.status) : undefined,
    after ? or(lt(jobs.createdAt, after.createdAt), and(eq(jobs.createdAt, after.createdAt), lt(jobs.id, after.id))) : undefined,
  );
  const newestFirst = [desc(jobs.createdAt), desc(jobs.id)] as const;
  const page = await db.select({ id: jobs.id, createdAt: jobs.createdAt }).from(jobs).where(onPage).orderBy(...newestFirst).limit(input.limit + 1);
  const ids = page.slice(0, input.limit).map((j) => j.id);
  if (ids.length === 0) return { jobs: [], nextCursor: null };
  // The rows shown, their sources and their counts in one batch, one read transaction: one moment. Read in separate
  // round trips, a retry or more committing in between showed a job's status and total from before it and its
  // counts from after (completed at 100 % with a file still processing).
  const [pageJobs, sourceRows, countRows] = await db.batch([
    db.select().from(jobs).where(inArray(jobs.id, ids)).orderBy(...newestFirst),
    db.select().from(sources).where(inArray(sources.jobId, ids)),
    db
      .select({
        jobId: variations.jobId,
        sourceId: variations.sourceId,
        status: variations.status,
        n: count(),
        progressSum: sql<number>`coalesce(sum(${variations.progress}), 0)`.mapWith(Number),
      })
      .from(variations)
      .where(inArray(variations.jobId, ids))
      .groupBy(variations.jobId, variations.sourceId, variations.status),
  ]);
  // A job deleted between the two reads is left out; the cursor still follows the page read.
  const own = new Map<string, OwnWork>();
  for (const r of countRows) {
    if (r.status !== "queued" && r.status !== "running") continue;
    const w = own.get(r.jobId) ?? { queued: 0, running: 0, runningLeft: 0 };
    if (r.status === "queued") w.queued += r.n;
    else {
      w.running += r.n;
      w.runningLeft += Math.max(0, r.n - r.progressSum / 100);
    }
    own.set(r.jobId, w);
  }
  // A page job with nothing pending has no row above: its own work is none, whatever the snapshot remembers.
  for (const j of pageJobs) if (!own.has(j.id)) own.set(j.id, { queued: 0, running: 0, runningLeft: 0 });
  const estimates = await estimateQueue(db, pageJobs, now, { snapshot: queue, own });
  return {
    jobs: pageJobs.map((j) =>
      presentJob(
        j,
        sourceRows.filter((s) => s.jobId === j.id),
        countRows.filter((c) => c.jobId === j.id),
        null,
        now,
        estimates.get(j.id),
      ),
    ),
    nextCursor: page.length > input.limit ? encodeCursor(page[input.limit - 1]!) : null,
  };
}
