import { and, asc, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../../client";
import { jobs, sources, variations, type JobStatus } from "../../schema";
import { finalizeJob } from "../finalize";
import { loadRecord, ownedBy, presentedVariationColumns } from "./load";
import { presentRecord, type JobRecord, type JobView, type Viewer } from "./present";

/** What a cancel request found and did; `job` is the job right after it (with the status it had before). */
export type CancelOutcome =
  | { kind: "not_found" }
  | { kind: "not_cancellable"; job: JobView; previousStatus: JobStatus }
  | { kind: "requested"; job: JobView; previousStatus: JobStatus };

/**
 * The cancel compare-and-set, one atomic batch: queued → cancelled (finished now, every variation cancelled);
 * processing or paused → cancelling with the request recorded and queued variations cancelled, running ones left to
 * their runners (which stop FFmpeg and call finalizeJob). Cancelled/cancelling jobs are left as they are (idempotent).
 * When cancelling leaves no running variation, nobody else would finalize the job, so it is finalized here.
 * Records the request and returns; waiting for runners to stop is the caller's business (edge/lib/cancel-job.ts).
 */
export async function requestCancel(
  db: Db,
  input: { jobId: string; viewer: Viewer; reason?: string | null },
  now: number,
): Promise<CancelOutcome> {
  const mine = and(eq(jobs.id, input.jobId), ownedBy(input.viewer));
  const wasQueued = sql`${jobs.status} = 'queued'`;
  const [before, , , afterJob, sourceRows, variationRows] = await db.batch([
    db.select({ status: jobs.status }).from(jobs).where(mine),
    db
      .update(jobs)
      .set({
        status: sql`case when ${wasQueued} then 'cancelled' else 'cancelling' end`,
        cancelRequestedAt: now,
        cancelledBy: input.viewer.email,
        cancelReason: input.reason ?? null,
        cancelledAt: sql`case when ${wasQueued} then ${now} else null end`,
        completedAt: sql`case when ${wasQueued} then ${now} else null end`,
        expiresAt: sql`case when ${wasQueued} then ${now} + ${jobs.retentionMs} else null end`,
        updatedAt: now,
      })
      .where(and(mine, inArray(jobs.status, ["queued", "processing", "paused"]))),
    // Also sweeps the queued variations of a job already cancelling (the cron's cancel of a disabled account's jobs
    // leaves them queued): no runner would ever claim them, so they would keep the job cancelling forever.
    db
      .update(variations)
      .set({ status: "cancelled", finishedAt: now, leaseExpiresAt: null })
      .where(
        and(
          eq(variations.jobId, input.jobId),
          eq(variations.status, "queued"),
          sql`exists (select 1 from ${jobs} where ${mine} and ${jobs.status} in ('cancelled', 'cancelling'))`,
        ),
      ),
    db.select().from(jobs).where(mine),
    db.select().from(sources).where(eq(sources.jobId, input.jobId)),
    db.select(presentedVariationColumns).from(variations).where(eq(variations.jobId, input.jobId)),
  ]);
  const previousStatus = before[0]?.status;
  const job = afterJob[0];
  if (!previousStatus || !job) return { kind: "not_found" };
  let record: JobRecord = { job, sources: sourceRows, variations: variationRows };
  if (previousStatus === "completed" || previousStatus === "failed") {
    return { kind: "not_cancellable", job: presentRecord(record, now, previousStatus), previousStatus };
  }
  if (job.status === "cancelling" && !variationRows.some((v) => v.status === "running")) {
    await finalizeJob(db, job.id, now);
    record = await loadRecord(db, job.id, input.viewer);
  }
  return { kind: "requested", job: presentRecord(record, now, previousStatus), previousStatus };
}

export interface BulkCancelResult {
  id: string;
  status: JobStatus | null;
  previousStatus: JobStatus | null;
  /** Set when this job was not cancelled. */
  error?: "not_found" | "not_cancellable";
}

/** Upper bound for one bulk request, so a huge queue cannot turn one request into minutes of work. */
export const BULK_CANCEL_MAX = 200;

/** Requests cancellation of several jobs (by ids, or every visible job in a status); does not wait. */
export async function cancelJobs(
  db: Db,
  input: { viewer: Viewer; ids?: string[]; status?: "queued" | "processing"; reason?: string | null },
  now: number,
): Promise<BulkCancelResult[]> {
  let ids = input.ids ?? [];
  if (input.status) {
    const rows = await db
      .select({ id: jobs.id })
      .from(jobs)
      .where(and(ownedBy(input.viewer), eq(jobs.status, input.status)))
      .orderBy(asc(jobs.createdAt), asc(jobs.id))
      .limit(BULK_CANCEL_MAX);
    ids = rows.map((r) => r.id);
  }
  // One read first: unknown ids, other users' ids, finished jobs and repeats cost no write. Otherwise one request
  // of 200 made-up ids was 200 write transactions on the database every user shares.
  const unique = [...new Set(ids)];
  const found = unique.length
    ? await db.select({ id: jobs.id, status: jobs.status }).from(jobs).where(and(ownedBy(input.viewer), inArray(jobs.id, unique)))
    : [];
  const statusOf = new Map(found.map((r) => [r.id, r.status]));
  const outcomes = new Map<string, BulkCancelResult>();
  // Unknown, another user's, or deleted between the read and the compare-and-set.
  const notFound = (id: string): BulkCancelResult => ({ id, status: null, previousStatus: null, error: "not_found" });
  for (const id of unique) {
    const seen = statusOf.get(id);
    if (seen === undefined) {
      outcomes.set(id, notFound(id));
      continue;
    }
    if (seen === "completed" || seen === "failed") {
      outcomes.set(id, { id, status: seen, previousStatus: seen, error: "not_cancellable" });
      continue;
    }
    // Already what was asked: as requestCancel would answer it, without its write.
    if (seen === "cancelled") {
      outcomes.set(id, { id, status: seen, previousStatus: seen });
      continue;
    }
    // The compare-and-set decides; the read above only spared it the hopeless ids.
    const outcome = await requestCancel(db, { jobId: id, viewer: input.viewer, reason: input.reason }, now);
    outcomes.set(
      id,
      outcome.kind === "not_found"
        ? notFound(id)
        : {
            id,
            status: outcome.job.status,
            previousStatus: outcome.previousStatus,
            ...(outcome.kind === "not_cancellable" ? { error: "not_cancellable" } : {}),
          },
    );
  }
  return ids.map((id) => outcomes.get(id)!);
}
