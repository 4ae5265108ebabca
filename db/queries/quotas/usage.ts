import { sql, type SQL } from "drizzle-orm";
import { isConstraintFailure } from "../../errors";
import type { QuotaRequest, UserLimits } from "../../limits";
import { ACTIVE_JOB_STATUSES } from "../states";

/**
 * What a user holds, as SQL expressions of the user id, named once: the admission checks (in the same statement as
 * the insert they guard), the usage read and the storage cap all use these. Aliased tables throughout, so the
 * fragments can sit inside an INSERT into `jobs` or `uploads` without binding to the outer row.
 *
 * Cost: the stored bytes are one row; every other subquery starts from one user's live rows (active jobs, open
 * uploads, ingests in flight: all bounded by the user's limits); none visits the user's finished history.
 */
const active = [...ACTIVE_JOB_STATUSES];

/** Unused upload states whose bytes are (or are about to be) stored: an uploading one counts at its declared size. */
export const UNUSED_UPLOAD_STATUSES = ["uploading", "completed"] as const;

/**
 * Bytes the user has stored (sources, outputs, unused uploads): what the storage cap can free. `users.stored_bytes`,
 * kept by triggers (migration 0031): one row read, whatever the user's history — admissions evaluate this under the
 * write lock, where a sum over every variation the user ever made held up every other user's writes.
 */
export const storedBytesOf = (userId: string | SQL) =>
  sql<number>`(SELECT coalesce((SELECT qb.stored_bytes FROM users qb WHERE qb.id = ${userId}), 0))`;

/**
 * What counts against the storage quota: the stored bytes and the room form uploads in flight hold
 * (`ingests.reserved_bytes`; the cron gives back the room of one not touched for INGEST_HOLD_MS). `exceptIngest`:
 * that ingest's own room, left out where it is traded for its stored sources (the job insert) or resized
 * (reserveIngest).
 */
export const storageBytesOf = (userId: string | SQL, exceptIngest?: string) => sql<number>`(${storedBytesOf(userId)}
  + (SELECT coalesce(sum(qi.reserved_bytes), 0) FROM ingests qi WHERE qi.user_id = ${userId}${exceptIngest === undefined ? sql`` : sql` AND qi.id <> ${exceptIngest}`}))`;

export const activeJobsOf = (userId: string | SQL) =>
  sql<number>`(SELECT count(*) FROM jobs qj WHERE qj.user_id = ${userId} AND qj.status IN ${active})`;

export const queuedVariationsOf = (userId: string | SQL) => sql<number>`(SELECT count(*) FROM variations qv
  WHERE qv.status = 'queued' AND qv.job_id IN (SELECT qj.id FROM jobs qj WHERE qj.user_id = ${userId} AND qj.status IN ${active}))`;

export const openUploadsOf = (userId: string | SQL) =>
  sql<number>`(SELECT count(*) FROM uploads qu WHERE qu.user_id = ${userId} AND qu.status = 'uploading')`;

export const unusedUploadsOf = (userId: string | SQL) =>
  sql<number>`(SELECT count(*) FROM uploads qu WHERE qu.user_id = ${userId} AND qu.status IN ${[...UNUSED_UPLOAD_STATUSES]})`;

/**
 * True when `request` fits every limit it names on top of what the user holds. Put in the WHERE (or the owner
 * column) of the insert it guards, it is evaluated with the insert: two parallel admissions cannot both fit.
 */
export function fitsQuota(userId: string | SQL, limits: UserLimits, request: QuotaRequest, exceptIngest?: string): SQL {
  const checks: SQL[] = [];
  if (request.activeJobs !== undefined) checks.push(sql`${activeJobsOf(userId)} + ${request.activeJobs} <= ${limits.activeJobs}`);
  if (request.queuedVariations !== undefined) {
    checks.push(sql`${queuedVariationsOf(userId)} + ${request.queuedVariations} <= ${limits.queuedVariations}`);
  }
  if (request.openUploads !== undefined) checks.push(sql`${openUploadsOf(userId)} + ${request.openUploads} <= ${limits.openUploads}`);
  if (request.unusedUploads !== undefined) {
    checks.push(sql`${unusedUploadsOf(userId)} + ${request.unusedUploads} <= ${limits.unusedUploads}`);
  }
  if (request.storageBytes !== undefined) {
    checks.push(sql`${storageBytesOf(userId, exceptIngest)} + ${request.storageBytes} <= ${limits.storageBytes}`);
  }
  return checks.length ? sql`(${sql.join(checks, sql` AND `)})` : sql`1`;
}

/**
 * The owner id when `request` fits, else NULL. Used as the NOT NULL user_id of the row being inserted, it makes an
 * admission over a limit fail the whole statement (and the batch or transaction around it): nothing is created.
 */
export function ownerIfFits(owner: SQL | string, userId: string, limits: UserLimits, request: QuotaRequest, exceptIngest?: string): SQL<string> {
  return sql<string>`(SELECT CASE WHEN ${fitsQuota(userId, limits, request, exceptIngest)} THEN ${owner} END)`;
}

/** The constraint error of an insert whose owner was NULL: the admission did not fit (or the owner row was gone). */
export function isOwnerRefused(err: unknown, table: "jobs" | "uploads" | "ingests"): boolean {
  return isConstraintFailure(err, `NOT NULL constraint failed: ${table}.user_id`);
}
