import { and, eq, inArray, isNull } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError, NotFoundError } from "../../errors";
import { jobs, sources, variations, type JobStatus } from "../../schema";
import { ownedBy, presentedVariationColumns } from "./load";
import { presentRecord, type JobView, type Viewer } from "./present";

/**
 * The pause compare-and-set: queued/processing → paused (no cancel requested). Nothing else is written: the job
 * now refuses work, so its runners' watch stops FFmpeg within about a second exactly as for a cancel, and their
 * stop settles each running variation back to queued with the attempt refunded (stopSettle decides it from the
 * job's status); completed variations stay; queued ones stay queued, not claimable while the job is paused.
 * Returns the job right after (with the status it had before); waiting for runners is the caller's business.
 * An already paused job is answered the same way (a retry after a lost answer); 409 `not_pausable` (body carries
 * the job) for any other status.
 */
export async function pauseJob(
  db: Db,
  input: { jobId: string; viewer: Viewer },
  now: number,
): Promise<{ job: JobView; previousStatus: JobStatus }> {
  const mine = and(eq(jobs.id, input.jobId), ownedBy(input.viewer));
  const [before, paused, after, sourceRows, variationRows] = await db.batch([
    db.select({ status: jobs.status }).from(jobs).where(mine),
    db
      .update(jobs)
      .set({ status: "paused", updatedAt: now })
      .where(and(mine, inArray(jobs.status, ["queued", "processing"]), isNull(jobs.cancelRequestedAt)))
      .returning({ id: jobs.id }),
    db.select().from(jobs).where(mine),
    db.select().from(sources).where(eq(sources.jobId, input.jobId)),
    db.select(presentedVariationColumns).from(variations).where(eq(variations.jobId, input.jobId)),
  ]);
  const previousStatus = before[0]?.status;
  const job = after[0];
  if (!previousStatus || !job) throw new NotFoundError("No such job");
  const view = presentRecord({ job, sources: sourceRows, variations: variationRows }, now, previousStatus);
  // Already paused: most often the same request again after its answer was lost — answer it as cancel does.
  if (paused.length === 0 && previousStatus !== "paused") {
    throw new ConflictError("not_pausable", `A ${previousStatus} job cannot be paused`, { job: view });
  }
  return { job: view, previousStatus };
}
