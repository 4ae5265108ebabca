import type { Db } from "../../db/client";
import { ConflictError, PayloadTooLargeError, ServiceUnavailableError, UnsupportedMediaTypeError, ValidationError } from "../../db/errors";
import { newId } from "../../db/ids";
import { exceededQuota, quotaError, type UserLimits } from "../../db/limits";
import { recordMultipartUpload } from "../../db/queries/multiparts";
import { getUserUsage } from "../../db/queries/quotas";
import {
  createUpload,
  deleteUnusedUpload,
  findUpload,
  getCompletableParts,
  getOpenUpload,
  getOwnUpload,
  markUploadAborted,
  markUploadCompleted,
  recordUploadPart,
  type UploadRow,
} from "../../db/queries/uploads";
import type { SessionUser } from "../env";
import { SNIFF_BYTES, sniffVideoType } from "./sniff";
import { isInvalidPart, isNoSuchMultipartUpload, partSizeFor, uploadKey } from "./storage";

interface Deps {
  db: Db;
  bucket: R2Bucket;
}

/**
 * Opens an R2 multipart upload and records it; the client then PUTs `partCount` parts of `partSize` bytes. The
 * declared size counts against the user's storage from here on. Over a per-user limit (open uploads, storage) it
 * answers the quota error before touching R2; the insert checks again atomically, and a start refused there aborts
 * the R2 upload it opened: nothing is left behind.
 */
export async function startUpload(
  deps: Deps,
  input: { user: SessionUser; filename: string; size: number; maxBytes: number; limits: UserLimits; idempotencyKey?: string | null },
  now: number,
): Promise<{ id: string; partSize: number; partCount: number; replayed: boolean }> {
  const key = input.idempotencyKey ?? null;
  const described = (u: UploadRow, replayed: boolean) => ({ id: u.id, partSize: u.partSize, partCount: u.partCount, replayed });
  // The same request again (its answer was lost): the upload it opened, before any limit is counted again.
  if (key !== null) {
    const earlier = await findUpload(deps.db, { userId: input.user.id, key });
    if (earlier) return described(earlier, true);
  }
  if (input.size > input.maxBytes) {
    throw new PayloadTooLargeError(`${input.filename} is larger than the ${input.maxBytes}-byte limit`);
  }
  const request = { openUploads: 1, unusedUploads: 1, storageBytes: input.size };
  const over = exceededQuota(await getUserUsage(deps.db, input.user.id), input.limits, request);
  if (over) {
    // A twin with the same key may have just opened the upload that fills the limit: that upload is the answer.
    const twin = key === null ? null : await findUpload(deps.db, { userId: input.user.id, key });
    if (twin) return described(twin, true);
    throw quotaError(over);
  }
  const id = newId();
  const partSize = partSizeFor(input.size);
  const partCount = Math.ceil(input.size / partSize);
  const objectKey = uploadKey(id);
  const mp = await deps.bucket.createMultipartUpload(objectKey);
  try {
    await createUpload(
      deps.db,
      {
        id,
        userId: input.user.id,
        filename: input.filename,
        size: input.size,
        partSize,
        partCount,
        objectKey,
        r2UploadId: mp.uploadId,
        idempotencyKey: key,
        limits: input.limits,
      },
      now,
    );
  } catch (err) {
    // The insert may have committed with only its reply lost (then the row is ours and the R2 upload stays), or a
    // twin request with the same key may have won the key's unique index (then the twin's upload is the answer and
    // ours is not recorded). Only when no row answers is the R2 upload aborted and the failure passed on.
    // A look-up that fails too says nothing: the row may exist, so its R2 upload is left alone. If it does, the
    // stale-upload rule removes both in time; if not, the multipart upload holds no object and R2's default
    // lifecycle rule aborts incomplete ones.
    const found = await findUpload(deps.db, { userId: input.user.id, key, id }).catch(() => undefined);
    if (found === undefined) throw err;
    if (found?.id === id) return described(found, false);
    await mp.abort().catch(() => {});
    if (found) return described(found, true);
    throw err;
  }
  return { id, partSize, partCount, replayed: false };
}

/**
 * Removes an upload no job uses: CAS to aborted first (so a job created at the same moment either consumed it
 * before, and it is left alone, or cannot consume it any more), then the R2 multipart upload aborted or the object
 * deleted, then the row. True when this call removed the row. `quietSince`: only if not used since then (the cap).
 */
export async function dropUnusedUpload(deps: Deps, upload: UploadRow, quietSince?: number): Promise<boolean> {
  if (!(await markUploadAborted(deps.db, upload.id, quietSince))) return false;
  if (upload.status === "uploading" || upload.status === "aborted") {
    await deps.bucket
      .resumeMultipartUpload(upload.objectKey, upload.r2UploadId)
      .abort()
      .catch(async (err) => {
        // An already finished or aborted multipart upload answers "no such upload"; the object delete below covers
        // both. Any other failure left it open with its parts, and the row deleted below is the only record of its
        // R2 id: it goes on record for the abandoned-multipart rule first, due at its next tick.
        if (isNoSuchMultipartUpload(err)) return;
        await recordMultipartUpload(deps.db, { uploadId: upload.r2UploadId, objectKey: upload.objectKey }, Date.now());
      });
  }
  await deps.bucket.delete(upload.objectKey);
  return deleteUnusedUpload(deps.db, upload.id);
}

/**
 * DELETE /api/uploads/:id: the owner drops an upload no job uses (open or completed), so an abandoned one stops
 * counting against their open uploads and storage at once instead of after JOB_TTL_HOURS. 409 `upload_used` once a
 * job consumed it (delete the job instead); a second delete of a dropped upload finds nothing (404).
 */
export async function dropOwnUpload(deps: Deps, input: { user: SessionUser; uploadId: string }): Promise<void> {
  const used = () => new ConflictError("upload_used", "This upload feeds a job; delete the job to free it");
  const upload = await getOwnUpload(deps.db, { uploadId: input.uploadId, userId: input.user.id });
  if (upload.status === "consumed") throw used();
  // A complete racing this delete may still store the object after it is deleted: then no row records it, and the
  // orphan rule removes it after an hour (uploads/ is one of its prefixes).
  if (await dropUnusedUpload(deps, upload)) return;
  // Not dropped here: a job consumed it meanwhile (409), or a concurrent delete or the cron removed it (done).
  const now = await getOwnUpload(deps.db, { uploadId: input.uploadId, userId: input.user.id }).catch(() => null);
  if (now?.status === "consumed") throw used();
}

function wrongPartSize(n: number, expected: number): ValidationError {
  return new ValidationError(`body: part ${n} must be exactly ${expected} bytes`, "body");
}

function uploadClosed(): ConflictError {
  return new ConflictError("upload_closed", "This upload was completed or aborted meanwhile");
}

function partMismatch(): ConflictError {
  return new ConflictError(
    "part_mismatch",
    "A part was sent twice at the same time with different bytes, so storage and the upload's record disagree. Send that part again (one request per part at a time), then complete.",
  );
}

/**
 * Passes a part's bytes through unchanged, erroring the stream with the typed error the client gets: more or fewer
 * bytes than the part's size (counted here, so FixedLengthStream never sees a byte too many), or, for part 1, first
 * bytes that are not a supported video.
 */
function checkedPart(n: number, expected: number, onType?: (type: string) => void): TransformStream<Uint8Array, Uint8Array> {
  let received = 0;
  let head = new Uint8Array(0);
  let decided = !onType;
  const decide = (controller: TransformStreamDefaultController<Uint8Array>) => {
    decided = true;
    const type = sniffVideoType(head);
    if (type) onType!(type);
    else controller.error(new UnsupportedMediaTypeError("The file is not an MP4, MOV, M4V, WebM or MKV video"));
  };
  return new TransformStream({
    transform(chunk, controller) {
      received += chunk.byteLength;
      if (received > expected) return controller.error(wrongPartSize(n, expected));
      if (!decided) {
        const next = new Uint8Array(head.length + chunk.length);
        next.set(head);
        next.set(chunk, head.length);
        head = next.subarray(0, SNIFF_BYTES);
        if (next.length >= SNIFF_BYTES) decide(controller);
      }
      controller.enqueue(chunk);
    },
    flush(controller) {
      if (!decided) decide(controller);
      if (received !== expected) controller.error(wrongPartSize(n, expected));
    },
  });
}

/**
 * Streams one part into R2 (never buffered: a FixedLengthStream gives R2 the known length it needs). A part may
 * be sent again (retry); the last ETag recorded wins. Part 1 is sniffed, so a non-video fails on its first part.
 */
export async function putUploadPart(
  deps: Deps,
  input: { user: SessionUser; uploadId: string; partNumber: number; body: ReadableStream<Uint8Array> | null; contentLength: number | null },
): Promise<{ etag: string }> {
  const upload = await getOpenUpload(deps.db, { uploadId: input.uploadId, userId: input.user.id });
  const n = input.partNumber;
  if (n > upload.partCount) throw new ValidationError(`n: this upload has ${upload.partCount} part(s)`, "n");
  const expected = n < upload.partCount ? upload.partSize : upload.size - upload.partSize * (upload.partCount - 1);
  if (!input.body || (input.contentLength !== null && input.contentLength !== expected)) throw wrongPartSize(n, expected);

  let contentType: string | undefined;
  let refused: unknown;
  const check = checkedPart(n, expected, n === 1 ? (t) => (contentType = t) : undefined);
  const sized = new FixedLengthStream(expected);
  // Both pipes end before the answer: the first one, refused, is what drains the rest of the body (lingering.ts).
  const piping = Promise.all([
    input.body.pipeTo(check.writable).catch(() => {}),
    check.readable.pipeTo(sized.writable).catch((err: unknown) => {
      refused = err;
    }),
  ]);
  const mp = deps.bucket.resumeMultipartUpload(upload.objectKey, upload.r2UploadId);
  let part: R2UploadedPart;
  try {
    part = await mp.uploadPart(n, sized.readable);
  } catch (err) {
    await piping;
    // R2 fails on a refused stream too: then the refusal is the reason (a short or long body, not a video).
    if (refused instanceof UnsupportedMediaTypeError || refused instanceof ValidationError) throw refused;
    // The multipart upload is gone: the stale-upload or storage rule (or a DELETE) removed it meanwhile.
    if (isNoSuchMultipartUpload(err)) throw uploadClosed();
    // Anything else failed on the storage side (or the client went away, and hears nothing). Never "wrong size":
    // clients take a 4xx as final, and the web UI then drops the whole upload over one transient storage error.
    throw new ServiceUnavailableError("Storage did not take this part; send it again", "storage_unavailable");
  }
  await piping;
  // The clock after the part's bytes arrived: the upload was in use until now.
  const stored = { uploadId: upload.id, partNumber: n, etag: part.etag, size: expected, contentType, now: Date.now() };
  if (!(await recordUploadPart(deps.db, stored))) {
    throw uploadClosed();
  }
  return { etag: part.etag };
}

/** Completes the R2 multipart upload once every part is there; the upload can then feed one job. */
export async function completeUpload(
  deps: Deps,
  input: { user: SessionUser; uploadId: string },
  now: number,
): Promise<{ id: string; filename: string; size: number; status: "completed" }> {
  const { upload, parts } = await getCompletableParts(deps.db, { uploadId: input.uploadId, userId: input.user.id });
  if (parts === "completed") return { id: upload.id, filename: upload.filename, size: upload.size, status: "completed" };
  if (!upload.contentType) throw new UnsupportedMediaTypeError("The file is not an MP4, MOV, M4V, WebM or MKV video");
  const mp = deps.bucket.resumeMultipartUpload(upload.objectKey, upload.r2UploadId);
  try {
    await mp.complete(parts);
  } catch (err) {
    // The same part sent twice at once with different bytes: R2 keeps the upload that finished last, the database
    // the ETag recorded last, and those need not be the same one. Nothing is lost; sending the part again (alone)
    // makes them agree.
    if (isInvalidPart(err)) throw partMismatch();
    if (!isNoSuchMultipartUpload(err)) throw err;
    // R2 no longer knows the upload: an earlier complete whose answer was lost (or one running beside this) stored
    // the object, or the stale-upload rule removed the upload. The stored object tells which.
    const stored = await deps.bucket.head(upload.objectKey);
    if (stored?.size !== upload.size) throw uploadClosed();
  }
  if (!(await markUploadCompleted(deps.db, upload.id, now))) throw uploadClosed();
  return { id: upload.id, filename: upload.filename, size: upload.size, status: "completed" };
}
