import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { DEFAULT_EFFECTS_JSON } from "../effects";
import { users } from "./users";

export const JOB_STATUSES = ["queued", "processing", "paused", "cancelling", "completed", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_JOB_STATUSES = ["completed", "failed", "cancelled"] as const satisfies readonly JobStatus[];

export const VARIATION_STATUSES = ["queued", "running", "completed", "failed", "cancelled"] as const;
export type VariationStatus = (typeof VARIATION_STATUSES)[number];

/** Times are integer milliseconds since the epoch (UTC); the API renders them as ISO-8601. */
export const jobs = sqliteTable(
  "jobs",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    status: text("status", { enum: JOB_STATUSES }).notNull().default("queued"),
    variationsPerVideo: integer("variations_per_video").notNull(),
    totalVariations: integer("total_variations").notNull(),
    error: text("error"),
    thumbnailKey: text("thumbnail_key"),
    createdAt: integer("created_at").notNull(),
    /**
     * When the job last entered the queue: its creation, or a resume/retry/more that put it back before any claim.
     * The "expired while queued" rule counts from here (null on rows older than the column: created_at).
     */
    queuedAt: integer("queued_at"),
    startedAt: integer("started_at"),
    completedAt: integer("completed_at"),
    cancelRequestedAt: integer("cancel_requested_at"),
    cancelledAt: integer("cancelled_at"),
    cancelledBy: text("cancelled_by"),
    cancelReason: text("cancel_reason"),
    /** How long outputs are kept once the job is finished; expires_at = finish time + this. */
    retentionMs: integer("retention_ms").notNull(),
    expiresAt: integer("expires_at"),
    updatedAt: integer("updated_at").notNull(),
    /** JobEffects as JSON (db/effects.ts): read by every runner with the claim, so all derive the same look. */
    effects: text("effects").notNull().default(DEFAULT_EFFECTS_JSON),
    /**
     * The client's `Idempotency-Key` of the request that created the job (null without one): the same key from
     * the same user again answers this job instead of creating a second (a retry after a lost answer).
     */
    idempotencyKey: text("idempotency_key"),
    /**
     * The `Idempotency-Key` of the last resume, retry or more that reopened the job (null if that one had none),
     * what it asked (`resume`, `retry`, `more:<n>`) and when (db/queries/jobs/reopen.ts): the same request again
     * is answered with the job, not refused as `job_active` or, for more, done twice.
     */
    reopenKey: text("reopen_key"),
    reopenRequest: text("reopen_request"),
    reopenedAt: integer("reopened_at"),
  },
  (t) => [
    index("jobs_user_created_idx").on(t.userId, t.createdAt),
    // A user's active jobs without visiting their finished history: the admission checks count them under the
    // write lock (db/queries/quotas/usage.ts).
    index("jobs_user_status_idx").on(t.userId, t.status),
    // One job per key and user; NULLs (no key) never collide in SQLite's unique indexes.
    uniqueIndex("jobs_user_idempotency_key_idx").on(t.userId, t.idempotencyKey),
    index("jobs_status_idx").on(t.status),
    index("jobs_expires_idx").on(t.expiresAt),
    // Object keys are looked up by value: the orphan rule asks which of a page of listed keys some row records
    // (db/queries/objects.ts), and every runner-side delete asks first (is-object-recorded.ts). Without these, each
    // lookup read every row of the table.
    index("jobs_thumbnail_key_idx").on(t.thumbnailKey),
  ],
);

/** One uploaded video of a job. */
export const sources = sqliteTable(
  "sources",
  {
    id: text("id").primaryKey(),
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    position: integer("position").notNull(),
    name: text("name").notNull(),
    size: integer("size").notNull(),
    contentType: text("content_type").notNull(),
    objectKey: text("object_key").notNull(),
    durationMs: integer("duration_ms"),
    width: integer("width"),
    height: integer("height"),
    hasAudio: integer("has_audio", { mode: "boolean" }),
    error: text("error"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("sources_job_position_uq").on(t.jobId, t.position), index("sources_object_key_idx").on(t.objectKey)],
);

export const variations = sqliteTable(
  "variations",
  {
    id: text("id").primaryKey(),
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    sourceId: text("source_id")
      .notNull()
      .references(() => sources.id, { onDelete: "cascade" }),
    /** 1-based within its source. */
    position: integer("position").notNull(),
    seed: integer("seed").notNull(),
    /** JSON of the effect parameters actually applied, written by the runner at claim time. */
    params: text("params"),
    status: text("status", { enum: VARIATION_STATUSES }).notNull().default("queued"),
    /** 0..100 */
    progress: real("progress").notNull().default(0),
    /** Attempts counted against MAX_ATTEMPTS in the current series: a hand-back refunds one, a reopen starts at 0. */
    attempts: integer("attempts").notNull().default(0),
    /**
     * How often this variation was ever claimed: never refunded, never reset. A claim's number is its ownership
     * token (with the runner id) and names its objects (`…a<n>.mp4`, db/keys.ts), so no two claims share a key.
     */
    claims: integer("claims").notNull().default(0),
    runnerId: text("runner_id"),
    leaseExpiresAt: integer("lease_expires_at"),
    /** Last stop stage the runner had to use: q | sigterm | sigkill. */
    stopStage: text("stop_stage"),
    createdAt: integer("created_at").notNull(),
    startedAt: integer("started_at"),
    finishedAt: integer("finished_at"),
    error: text("error"),
    outputKey: text("output_key"),
    outputSize: integer("output_size"),
    /**
     * The output's SHA-256 (hex) and CRC-32, computed by the runner from the file it uploaded and recorded with the
     * completion: the ZIP download lays out every header, manifest and byte range from them without reading a byte
     * of any output it does not send. Null for outputs recorded before they were kept (filled on first download).
     */
    outputSha256: text("output_sha256"),
    outputCrc32: integer("output_crc32"),
    /** Quality against the source on sampled frames (runner/quality): SSIM 0..1, PSNR in dB. */
    ssim: real("ssim"),
    psnr: real("psnr"),
    /** Distinctness from the closest sibling of the same source (runner/quality says how it is measured). */
    distinct: real("distinctness"),
    /** How many times this variation was re-drawn with a new seed (too damaged or too close to a sibling). */
    redraws: integer("redraws").notNull().default(0),
    /** Why the last re-draw happened, for the user (no paths). */
    redrawReason: text("redraw_reason"),
    /** A still of the output, `outputs/<job>/<variation>.a<attempt>.jpg` (variationThumbnailKey, db/keys.ts). */
    thumbnailKey: text("thumbnail_key"),
    /**
     * The output's sampled frames, small and gray (base64; runner/quality.ts): siblings encoded by any runner compute
     * their distinctness from it without downloading this output. Never sent to API clients.
     */
    fingerprint: text("fingerprint"),
  },
  (t) => [
    uniqueIndex("variations_source_position_uq").on(t.sourceId, t.position),
    uniqueIndex("variations_job_seed_uq").on(t.jobId, t.seed),
    index("variations_claim_idx").on(t.status, t.createdAt),
    index("variations_job_idx").on(t.jobId, t.status),
    index("variations_runner_idx").on(t.runnerId, t.status),
    index("variations_output_key_idx").on(t.outputKey),
    index("variations_thumbnail_key_idx").on(t.thumbnailKey),
  ],
);

/** A multipart upload in progress (R2 multipart underneath). */
export const uploads = sqliteTable(
  "uploads",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    filename: text("filename").notNull(),
    size: integer("size").notNull(),
    partSize: integer("part_size").notNull(),
    partCount: integer("part_count").notNull(),
    objectKey: text("object_key").notNull(),
    r2UploadId: text("r2_upload_id").notNull(),
    status: text("status", { enum: ["uploading", "completed", "consumed", "aborted"] })
      .notNull()
      .default("uploading"),
    contentType: text("content_type"),
    createdAt: integer("created_at").notNull(),
    completedAt: integer("completed_at"),
    /**
     * When its last part was stored: an upload still sending (a 2 GiB file takes well over the storage cap's hour)
     * is in use, whenever it was opened. Null: no part yet.
     */
    touchedAt: integer("touched_at"),
    /** The `Idempotency-Key` of the POST /api/uploads that opened it: a retry after a lost answer gets this upload. */
    idempotencyKey: text("idempotency_key"),
  },
  (t) => [
    // By status too: the admission checks count a user's open and unused uploads, not every consumed one.
    index("uploads_user_status_idx").on(t.userId, t.status),
    uniqueIndex("uploads_user_idempotency_key_idx").on(t.userId, t.idempotencyKey),
    index("uploads_status_created_idx").on(t.status, t.createdAt),
    index("uploads_object_key_idx").on(t.objectKey),
  ],
);

export const uploadParts = sqliteTable(
  "upload_parts",
  {
    uploadId: text("upload_id")
      .notNull()
      .references(() => uploads.id, { onDelete: "cascade" }),
    partNumber: integer("part_number").notNull(),
    etag: text("etag").notNull(),
    size: integer("size").notNull(),
  },
  (t) => [primaryKey({ name: "upload_parts_pk", columns: [t.uploadId, t.partNumber] })],
);

export const runners = sqliteTable("runners", {
  id: text("id").primaryKey(),
  host: text("host").notNull(),
  version: text("version").notNull(),
  concurrency: integer("concurrency").notNull(),
  active: integer("active").notNull().default(0),
  startedAt: integer("started_at").notNull(),
  lastSeenAt: integer("last_seen_at").notNull(),
});

/**
 * A form upload (`POST /api/jobs`, multipart) whose sources are being stored before its job row exists. The row is
 * written before the first object and refreshed while bytes arrive, so the orphan rule leaves
 * `sources/<id>/` alone; the job is created only while this row exists, and creating it deletes the row.
 */
export const ingests = sqliteTable(
  "ingests",
  {
    /** The id the job will get. */
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull(),
    touchedAt: integer("touched_at").notNull(),
    /**
     * Bytes this upload holds of its owner's storage quota while in flight (its declared length, or what it has
     * stored plus a step): counted with what the owner stores, so parallel uploads cannot each fill the same room.
     */
    reservedBytes: integer("reserved_bytes").notNull().default(0),
    /**
     * What it had stored when last touched: the room it keeps after a silence (releaseIdleIngestRooms), since those
     * objects stay in the bucket until the upload ends or the orphan rule takes them.
     */
    storedBytes: integer("stored_bytes").notNull().default(0),
    /**
     * The request's Idempotency-Key: a retry of it that arrives while this upload is still in flight is told to
     * wait (429) instead of being refused for the room this one holds (409 quota_exceeded).
     */
    idempotencyKey: text("idempotency_key"),
  },
  (t) => [index("ingests_touched_idx").on(t.touchedAt), index("ingests_user_idx").on(t.userId)],
);

/**
 * An R2 multipart upload the edge opened for a runner's output or a form upload's source, until it is completed or
 * aborted. R2 lists no unfinished upload, so neither the orphan rule nor anything else could find one that was left
 * open (a runner killed mid-upload, an abort that failed, a create whose answer was lost and was sent again): its
 * parts stayed stored, outside every quota, until R2's own expiry. abortAbandonedMultiparts aborts what is still
 * here once `dueAt` has passed. (The upload API's uploads keep their R2 id in `uploads`, and come here only when a
 * drop could not abort them.)
 */
export const multipartUploads = sqliteTable(
  "multipart_uploads",
  {
    uploadId: text("upload_id").primaryKey(),
    objectKey: text("object_key").notNull(),
    /**
     * When the lifecycle rule may abort it: MULTIPART_ABANDON_MS after it was opened (far beyond any upload in
     * progress), at once for one a drop could not abort, an hour later again after an abort that failed.
     */
    dueAt: integer("due_at").notNull(),
  },
  (t) => [index("multipart_uploads_due_idx").on(t.dueAt)],
);

/** Where a lifecycle rule that walks the bucket over several ticks stopped (the last key it looked at). */
export const sweepCursors = sqliteTable("sweep_cursors", {
  name: text("name").primaryKey(),
  /** Last key handled; the next tick lists from after it. Empty: start from the beginning. */
  lastKey: text("last_key").notNull(),
  updatedAt: integer("updated_at").notNull(),
});
