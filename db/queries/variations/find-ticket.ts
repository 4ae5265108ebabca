import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import type { JobStatus, VariationStatus } from "../../schema";

/** What the edge needs to judge a runner's ticket for one variation (edge/lib/runner-scope.ts decides). */
export interface TicketRow {
  variationId: string;
  jobId: string;
  status: VariationStatus;
  runnerId: string | null;
  /** The current claim's number (`claims`): what a ticket's attempt must equal. */
  attempt: number;
  leaseExpiresAt: number | null;
  /** The variation's source object (`sources/…` or `uploads/…`). */
  sourceKey: string;
  jobStatus: JobStatus;
  jobThumbnailKey: string | null;
}

/** The variation's lease, its source key and its job's status and thumbnail, or null when the variation is gone. */
export async function findTicket(db: Db, variationId: string): Promise<TicketRow | null> {
  const [row] = await db.all<TicketRow>(sql`
    SELECT v.id AS variationId, v.job_id AS jobId, v.status AS status, v.runner_id AS runnerId, v.claims AS attempt,
      v.lease_expires_at AS leaseExpiresAt, s.object_key AS sourceKey, j.status AS jobStatus,
      j.thumbnail_key AS jobThumbnailKey
    FROM variations v JOIN sources s ON s.id = v.source_id JOIN jobs j ON j.id = v.job_id
    WHERE v.id = ${variationId}`);
  return row ?? null;
}
