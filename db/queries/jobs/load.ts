import { and, eq, getTableColumns, type SQL } from "drizzle-orm";
import type { Db } from "../../client";
import { GoneError, NotFoundError } from "../../errors";
import { jobs, sources, variations } from "../../schema";
import type { JobRecord, JobRow, Viewer } from "./present";

/** The owner as a plain viewer, for reading back a job the request itself created (sees only their own jobs). */
export function ownerViewer(userId: string): Viewer {
  return { id: userId, email: "", role: "user" };
}

/** Ownership as SQL: a plain user only ever touches rows of their own jobs. */
export function ownedBy(viewer: Viewer): SQL | undefined {
  return viewer.role === "admin" ? undefined : eq(jobs.userId, viewer.id);
}

/** A variation's columns for presenting: all but the fingerprint (a few KB each, for runners only). */
const { fingerprint: _fingerprint, ...presentedVariationColumns } = getTableColumns(variations);
export { presentedVariationColumns };

/** The job with its sources and variations, as the viewer may see it (another user's job is not found). */
export async function loadRecord(db: Db, jobId: string, viewer: Viewer): Promise<JobRecord> {
  const [jobRows, sourceRows, variationRows] = await db.batch([
    db.select().from(jobs).where(and(eq(jobs.id, jobId), ownedBy(viewer))),
    db.select().from(sources).where(eq(sources.jobId, jobId)),
    db.select(presentedVariationColumns).from(variations).where(eq(variations.jobId, jobId)),
  ]);
  const job = jobRows[0];
  if (!job) throw new NotFoundError("No such job");
  return { job, sources: sourceRows, variations: variationRows };
}

/** The job row alone, as the viewer may see it. */
export async function loadJobRow(db: Db, jobId: string, viewer: Viewer): Promise<JobRow> {
  const [job] = await db.select().from(jobs).where(and(eq(jobs.id, jobId), ownedBy(viewer)));
  if (!job) throw new NotFoundError("No such job");
  return job;
}

export function assertNotExpired(job: JobRow, now: number): void {
  if (job.expiresAt !== null && job.expiresAt <= now) {
    throw new GoneError("This job's files have expired", "expired");
  }
}

