import { and, asc, eq, inArray, lt, lte, sql } from "drizzle-orm";
import { REPLAY_SAFE, type Db } from "../client";
import { ConflictError, NotFoundError, ValidationError } from "../errors";
import type { QuotaRequest, UserLimits } from "../limits";
import { uploadParts, uploads } from "../schema";
import { explainRefusal } from "./quotas/explain-refusal";
import { isOwnerRefused, ownerIfFits } from "./quotas/usage";

export type UploadRow = typeof uploads.$inferSelect;

/**
 * Records a new upload, only if it fits its owner's limits (one more open upload, `size` more bytes), checked in
 * the insert itself so parallel starts cannot both pass; over a limit → the quota error and no row.
 */
export async function createUpload(
  db: Db,
  input: Omit<UploadRow, "status" | "contentType" | "createdAt" | "completedAt" | "touchedAt"> & { limits: UserLimits },
  now: number,
): Promise<UploadRow> {
  const { limits, ...fields } = input;
  const row: UploadRow = { ...fields, status: "uploading", contentType: null, createdAt: now, completedAt: null, touchedAt: null };
  const request: QuotaRequest = { openUploads: 1, unusedUploads: 1, storageBytes: row.size };
  try {
    await db.insert(uploads).values({ ...row, userId: ownerIfFits(row.userId, row.userId, limits, request) });
  } catch (err) {
    if (!isOwnerRefused(err, "uploads")) throw err;
    throw await explainRefusal(db, row.userId, limits, request);
  }
  return row;
}

/**
 * The upload a POST /api/uploads with this `Idempotency-Key` opened for this user, or the one with this id (the
 * request's own row, when only the reply to its insert was lost); null when neither exists. Keys are per user.
 */
export async function findUpload(db: Db, input: { userId: string; key: string | null; id?: string }): Promise<UploadRow | null> {
  if (input.id !== undefined) {
    const [own] = await db
      .select()
      .from(uploads)
      .where(and(eq(uploads.id, input.id), eq(uploads.userId, input.userId)));
    if (own) return own;
  }
  if (input.key === null) return null;
  const [keyed] = await db
    .select()
    .from(uploads)
    .where(and(eq(uploads.userId, input.userId), eq(uploads.idempotencyKey, input.key)));
  return keyed ?? null;
}

/** The caller's upload in any status; someone else's upload is NotFound like an unknown one. */
export async function getOwnUpload(db: Db, input: { uploadId: string; userId: string }): Promise<UploadRow> {
  const [row] = await db
    .select()
    .from(uploads)
    .where(and(eq(uploads.id, input.uploadId), eq(uploads.userId, input.userId)));
  if (!row) throw new NotFoundError("No such upload");
  return row;
}

/** The caller's upload that still accepts parts; someone else's upload is NotFound like an unknown one. */
export async function getOpenUpload(db: Db, input: { uploadId: string; userId: string }): Promise<UploadRow> {
  return open(await getOwnUpload(db, input));
}

function open(row: UploadRow): UploadRow {
  if (row.status !== "uploading") throw new ConflictError("upload_closed", `This upload is already ${row.status}`);
  return row;
}

/**
 * Records (or, for a retried part, replaces) a part's ETag; R2 keeps the last upload of a part number. Both
 * statements set given values, so they are marked replay-safe: a pooled connection that drops under this write
 * (workerd hands out one the server closed) is retried instead of failing a part whose bytes R2 already has.
 */
export async function recordUploadPart(
  db: Db,
  input: { uploadId: string; partNumber: number; etag: string; size: number; contentType?: string; now: number },
): Promise<boolean> {
  // Only while the upload still takes parts: its owner may have dropped it (or the cron aborted it) while this
  // part's bytes were on their way. False then (the caller answers upload_closed), instead of a foreign-key error.
  const upsert = db.all<{ n: number }>(sql`${REPLAY_SAFE}INSERT INTO upload_parts (upload_id, part_number, etag, size)
    SELECT ${input.uploadId}, ${input.partNumber}, ${input.etag}, ${input.size}
    WHERE EXISTS (SELECT 1 FROM uploads WHERE id = ${input.uploadId} AND status = 'uploading')
    ON CONFLICT (upload_id, part_number) DO UPDATE SET etag = excluded.etag, size = excluded.size
    RETURNING part_number AS n`);
  // Part 1 carries the sniffed container type; it becomes the source's content type. Every part marks the upload
  // as in use (the storage cap leaves uploads touched within its hour alone).
  const [recorded] = await db.batch([
    upsert,
    db.run(sql`${REPLAY_SAFE}UPDATE uploads SET touched_at = max(coalesce(touched_at, 0), ${input.now}),
      content_type = coalesce(${input.contentType ?? null}, content_type)
      WHERE id = ${input.uploadId} AND status = 'uploading'`),
  ]);
  return recorded.length > 0;
}

export async function listUploadParts(db: Db, uploadId: string) {
  return db.select().from(uploadParts).where(eq(uploadParts.uploadId, uploadId)).orderBy(asc(uploadParts.partNumber));
}

/** Checks every part is present with the expected size; returns them for R2's complete() call. */
export async function getCompletableParts(
  db: Db,
  input: { uploadId: string; userId: string },
): Promise<{ upload: UploadRow; parts: { partNumber: number; etag: string }[] | "completed" }> {
  const own = await getOwnUpload(db, input);
  // Completed already: a complete retried after its answer was lost (or sent twice) is answered like the first.
  if (own.status === "completed") return { upload: own, parts: "completed" };
  const upload = open(own);
  const parts = await listUploadParts(db, upload.id);
  const missing: number[] = [];
  for (let n = 1; n <= upload.partCount; n++) if (!parts.some((p) => p.partNumber === n)) missing.push(n);
  if (missing.length) {
    throw new ValidationError(`parts: missing part(s) ${missing.slice(0, 10).join(", ")}`, "parts");
  }
  return { upload, parts: parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag })) };
}

/**
 * CAS uploading → completed. Also true when it is completed already: a complete retried after its reply was lost,
 * or two at once, both stored the same object (the first completion time is kept). False once aborted or consumed.
 */
export async function markUploadCompleted(db: Db, uploadId: string, now: number): Promise<boolean> {
  const done = await db
    .update(uploads)
    .set({ status: "completed", completedAt: sql`coalesce(${uploads.completedAt}, ${now})` })
    .where(and(eq(uploads.id, uploadId), inArray(uploads.status, ["uploading", "completed"])))
    .returning({ id: uploads.id });
  return done.length === 1;
}

/**
 * Uploads never turned into a job (still uploading, or completed but unused) not used since before `before`: a
 * large upload may still be sending parts, or have just completed, long after it was opened. Drop them with
 * `quietSince: before`, so a part or a complete that lands after this listing keeps the upload.
 */
export async function listStaleUploads(db: Db, before: number, limit: number): Promise<UploadRow[]> {
  return db
    .select()
    .from(uploads)
    .where(
      and(
        inArray(uploads.status, ["uploading", "completed", "aborted"]),
        // Implied by the last use, but lets the listing range on uploads_status_created_idx.
        lt(uploads.createdAt, before),
        lt(UPLOAD_LAST_USED, before),
      ),
    )
    .orderBy(asc(uploads.createdAt))
    .limit(limit);
}

/** Deletes an upload row (its parts cascade) unless a job consumed it meanwhile; true when deleted. */
export async function deleteUnusedUpload(db: Db, uploadId: string): Promise<boolean> {
  const gone = await db
    .delete(uploads)
    .where(and(eq(uploads.id, uploadId), inArray(uploads.status, ["uploading", "completed", "aborted"])))
    .returning({ id: uploads.id });
  return gone.length === 1;
}

/** CAS to aborted before the R2 abort, so a concurrent `complete` cannot win after we decided to drop it. */
export async function markUploadAborted(db: Db, uploadId: string, quietSince?: number): Promise<boolean> {
  const done = await db
    .update(uploads)
    .set({ status: "aborted" })
    .where(
      and(
        eq(uploads.id, uploadId),
        inArray(uploads.status, ["uploading", "completed", "aborted"]),
        // The storage cap's or stale-upload rule's choice re-checked: a part or a complete since its listing makes
        // the upload in use.
        quietSince === undefined ? undefined : lte(UPLOAD_LAST_USED, quietSince),
      ),
    )
    .returning({ id: uploads.id });
  return done.length === 1;
}

/** When an upload was last used: opened, a part stored, or completed (the storage cap's one-hour floor counts from it). */
export const UPLOAD_LAST_USED = sql`max(${uploads.createdAt}, coalesce(${uploads.touchedAt}, 0), coalesce(${uploads.completedAt}, 0))`;
