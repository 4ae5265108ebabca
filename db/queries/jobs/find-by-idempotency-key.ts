import { and, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { jobs } from "../../schema";
import { ownerViewer } from "./load";
import { getJob } from "./view";
import type { QueueSnapshotSource } from "./estimate-queue";
import type { JobView } from "./present";

/**
 * The job a request with this `Idempotency-Key` already created for this user, or null. Keys are per user: another
 * user's key never names a job here.
 */
export async function findJobByIdempotencyKey(
  db: Db,
  input: { userId: string; key: string },
  now: number,
  queue?: QueueSnapshotSource,
): Promise<JobView | null> {
  const [row] = await db
    .select({ id: jobs.id })
    .from(jobs)
    .where(and(eq(jobs.userId, input.userId), eq(jobs.idempotencyKey, input.key)));
  if (!row) return null;
  // Deleted between the two reads: the key is free again.
  return await getJob(db, { jobId: row.id, viewer: ownerViewer(input.userId) }, now, queue).catch((err: unknown) => {
    if (err instanceof NotFoundError) return null;
    throw err;
  });
}
