import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import type { UserUsage } from "../../limits";
import { activeJobsOf, openUploadsOf, queuedVariationsOf, storageBytesOf, unusedUploadsOf } from "./usage";

/**
 * What one user holds now (a read: admissions check again atomically when they insert). `exceptIngest`: leave that
 * form upload's room out (see storageBytesOf).
 */
export async function getUserUsage(db: Db, userId: string, exceptIngest?: string): Promise<UserUsage> {
  const [row] = await db.all<UserUsage>(sql`SELECT
    ${storageBytesOf(userId, exceptIngest)} AS storageBytes,
    ${activeJobsOf(userId)} AS activeJobs,
    ${queuedVariationsOf(userId)} AS queuedVariations,
    ${openUploadsOf(userId)} AS openUploads,
    ${unusedUploadsOf(userId)} AS unusedUploads`);
  return {
    storageBytes: Number(row?.storageBytes ?? 0),
    activeJobs: Number(row?.activeJobs ?? 0),
    queuedVariations: Number(row?.queuedVariations ?? 0),
    openUploads: Number(row?.openUploads ?? 0),
    unusedUploads: Number(row?.unusedUploads ?? 0),
  };
}
