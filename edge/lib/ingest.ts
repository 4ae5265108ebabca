import type { JobEffects } from "../../db/effects";
import { AppError, ConflictError, isDbBusy, isDbUnavailable, NotFoundError, PayloadTooLargeError, TooManyRequestsError, UnsupportedMediaTypeError, ValidationError } from "../../db/errors";
import { newId } from "../../db/ids";
import type { Db } from "../../db/client";
import { exceededQuota, INGEST_HOLD_MS, INGEST_TOUCH_MS, quotaError, RESERVE_STEP_BYTES, type UserLimits } from "../../db/limits";
import { abandonIngest, isIngestInFlight, reserveIngest, startIngest, touchIngest } from "../../db/queries/ingests";
import { getUserUsage } from "../../db/queries/quotas";
import { createJobFromIngest, getJob, ownerViewer, type JobView, type NewSource } from "../../db/queries/jobs";
import { MultipartReader, multipartBoundary } from "./multipart";
import { multipartBook, type MultipartBook } from "./multipart-book";
import { SNIFF_BYTES, sniffVideoType } from "./sniff";
import { DEFAULT_VARIATIONS_PER_VIDEO, EffectsField, parseWith, VariationsCount } from "./schemas";
import { deleteKeys, PART_BYTES, sourceKey } from "./storage";

/** How long a form upload waits before asking a database that did not answer its last progress write again. */
const INGEST_RETRY_MS = 10_000;

export const MAX_VIDEOS = 10;
const MAX_FIELD_BYTES = 1024;
/** Plain fields are few and tiny; a body with many parts is not a form this API understands. */
const MAX_PARTS = 50;

function concatAll(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1 && chunks[0]!.length === total) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Streams one file into R2 under `key`. Files that end within the first part are a single put() (known length);
 * longer ones go through an R2 multipart upload in fixed PART_BYTES parts, because the length of a multipart
 * form field is unknown until its end. Sniffs the first bytes before anything is stored.
 */
export async function storeVideo(
  bucket: R2Bucket,
  key: string,
  body: AsyncIterable<Uint8Array>,
  opts: {
    name: string;
    maxBytes: number;
    partBytes?: number;
    /** After each chunk is counted (bytes of this file so far), before it is stored. */
    onChunk?: (fileBytes: number) => Promise<void>;
    /** The error for a file over `maxBytes` (default: 413 naming the file). */
    tooLarge?: (total: number) => Error;
    /** Opens the R2 multipart upload of a file larger than a part on the record (none: opened directly, in tests). */
    book?: MultipartBook;
  },
): Promise<{ size: number; contentType: string }> {
  const partBytes = opts.partBytes ?? PART_BYTES;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let total = 0;
  let contentType: string | null = null;
  // In an object so TypeScript does not narrow it to null across the async closures below.
  const mp: { upload: R2MultipartUpload | null } = { upload: null };
  const parts: R2UploadedPart[] = [];

  const sniff = () => {
    const head = concatAll(pending, pendingBytes).subarray(0, SNIFF_BYTES);
    contentType = sniffVideoType(head);
    if (!contentType) {
      throw new UnsupportedMediaTypeError(`${opts.name} is not an MP4, MOV, M4V, WebM or MKV video`);
    }
  };
  const flushPart = async () => {
    // Cut exactly partBytes off the front of what is pending; the rest stays for the next part.
    const all = concatAll(pending, pendingBytes);
    const part = all.slice(0, partBytes);
    const rest = all.subarray(partBytes);
    pending = rest.length ? [rest] : [];
    pendingBytes = rest.length;
    const options = { httpMetadata: { contentType: contentType! } };
    mp.upload ??= await (opts.book ? opts.book.open(bucket, key, options) : bucket.createMultipartUpload(key, options));
    parts.push(await mp.upload.uploadPart(parts.length + 1, part));
  };

  try {
    for await (const chunk of body) {
      total += chunk.length;
      if (total > opts.maxBytes) {
        throw opts.tooLarge?.(total) ?? new PayloadTooLargeError(`${opts.name} is larger than the ${opts.maxBytes}-byte limit`);
      }
      await opts.onChunk?.(total);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (!contentType && pendingBytes >= SNIFF_BYTES) sniff();
      // Flush only while more than a full part is pending: the final part is sent after the stream ends.
      while (pendingBytes > partBytes) await flushPart();
    }
    if (total === 0) throw new ValidationError(`videos: ${opts.name} is empty`, "videos");
    if (!contentType) sniff();
    const last = concatAll(pending, pendingBytes);
    if (mp.upload) {
      parts.push(await mp.upload.uploadPart(parts.length + 1, last));
      await mp.upload.complete(parts);
      await opts.book?.closed({ uploadId: mp.upload.uploadId, key });
    } else {
      await bucket.put(key, last, { httpMetadata: { contentType: contentType! } });
    }
    return { size: total, contentType: contentType! };
  } catch (err) {
    // Aborted here when R2 lets it; otherwise (R2 failing, the Worker ended first) its row stays for the lifecycle rule.
    if (mp.upload && (await mp.upload.abort().then(() => true, () => false))) await opts.book?.closed({ uploadId: mp.upload.uploadId, key });
    throw err;
  }
}

export interface ReceivedForm {
  sources: NewSource[];
  /** Plain fields by name (last value wins). */
  fields: Record<string, string>;
}

/** The storage a form upload may still fill, and what to throw when a file goes past it. */
/** How long a retry of a form upload still in flight is asked to wait before asking again. */
const TWIN_RETRY_AFTER_SECONDS = 5;

export interface FormQuota {
  bytesLeft: number;
  exceeded(requestedBytes: number): Error;
  /** Before file `index` (0-based) is stored: throws when one more file does not fit (e.g. queued variations). */
  beforeFile?(index: number): void;
}

/** Keeps a form upload's sources visible as recorded while they stream in (see createJobFromForm). */
export interface IngestHooks {
  /** Before the first object is stored. */
  begin(): Promise<void>;
  /**
   * As bytes arrive, before they are stored: `storedBytes` is the form's video bytes so far, this chunk included
   * (the hook decides how often it writes, and throws when they no longer fit the room the upload holds).
   */
  touch(storedBytes: number): Promise<void>;
}

/**
 * Reads a `POST /api/jobs` multipart body as a stream: every `videos` file goes straight to R2 at
 * `sources/<jobId>/<sourceId>`, plain fields are collected (and checked by `checkField` as soon as they
 * arrive, so a bad count fails before gigabytes are uploaded). On any error the objects stored so far are deleted
 * (no job can exist yet: it is created only after this returns).
 */
export async function receiveJobForm(
  req: Request,
  opts: {
    bucket: R2Bucket;
    jobId: string;
    maxFileBytes: number;
    checkField?: (name: string, value: string) => void;
    partBytes?: number;
    ingest?: IngestHooks;
    quota?: FormQuota;
    book?: MultipartBook;
  },
): Promise<ReceivedForm> {
  const boundary = multipartBoundary(req.headers.get("content-type"));
  if (!boundary) throw new ValidationError("body: expected multipart/form-data with a boundary", "body");
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > MAX_VIDEOS * opts.maxFileBytes + 1024 * 1024) {
    throw new PayloadTooLargeError(`The upload is larger than ${MAX_VIDEOS} videos of ${opts.maxFileBytes} bytes`);
  }
  if (!req.body) throw new ValidationError("videos: at least one video is required", "videos");

  const reader = new MultipartReader(req.body, boundary);
  const sources: NewSource[] = [];
  const fields: Record<string, string> = {};
  let inFlight: string | null = null;
  try {
    let parts = 0;
    for (let part = await reader.next(); part; part = await reader.next()) {
      if (++parts > MAX_PARTS) throw new ValidationError(`body: more than ${MAX_PARTS} form fields`, "body");
      if (part.filename === null) {
        const value = await reader.text(part.name, MAX_FIELD_BYTES);
        opts.checkField?.(part.name, value);
        fields[part.name] = value;
        continue;
      }
      if (part.name !== "videos") {
        throw new ValidationError(`${part.name}: unexpected file field (send videos as "videos")`, part.name);
      }
      if (sources.length === MAX_VIDEOS) {
        throw new ValidationError(`videos: at most ${MAX_VIDEOS} videos per job`, "videos");
      }
      const id = newId();
      const name = part.filename.trim().slice(0, 255) || `video-${sources.length + 1}`;
      opts.quota?.beforeFile?.(sources.length);
      if (sources.length === 0) await opts.ingest?.begin();
      inFlight = sourceKey(opts.jobId, id);
      const storedBytes = sources.reduce((n, s) => n + s.size, 0);
      const quotaLeft = opts.quota ? opts.quota.bytesLeft - storedBytes : Infinity;
      const byQuota = quotaLeft < opts.maxFileBytes;
      const stored = await storeVideo(opts.bucket, inFlight, reader.body(), {
        name,
        maxBytes: byQuota ? quotaLeft : opts.maxFileBytes,
        partBytes: opts.partBytes,
        onChunk: opts.ingest ? (fileBytes) => opts.ingest!.touch(storedBytes + fileBytes) : undefined,
        tooLarge: byQuota ? (total) => opts.quota!.exceeded(storedBytes + total) : undefined,
        book: opts.book,
      });
      sources.push({ id, name, size: stored.size, contentType: stored.contentType, objectKey: inFlight });
      inFlight = null;
    }
    if (sources.length === 0) throw new ValidationError("videos: at least one video is required", "videos");
    return { sources, fields };
  } catch (err) {
    await reader.cancel();
    await deleteKeys(opts.bucket, [...sources.map((s) => s.objectKey), ...(inFlight ? [inFlight] : [])]).catch(
      (e: unknown) => console.error("could not delete objects of a failed upload (the orphan sweep will)", e),
    );
    throw err;
  }
}

/** How often a form upload in flight refreshes its ingest row (see db/limits.ts). */
export { INGEST_TOUCH_MS };

/** Room for the multipart framing (boundaries, part headers) in a declared Content-Length: not video bytes. */
const FORM_OVERHEAD_BYTES = 64 * 1024;


/**
 * `POST /api/jobs` as multipart/form-data: checks the user's limits before reading the body (one more active job,
 * one more variation, the declared Content-Length against the storage left), records the ingest before the first
 * object is stored and refreshes it while bytes arrive (so the orphan rule never takes a source of a slow upload),
 * streams the videos into R2 within the storage left (and the queued variations left, file by file), then creates
 * the job from the ingest in one batch, which checks every limit again atomically. When that batch fails, deleting
 * the ingest row tells whether it committed: only an ingest this request deleted itself has objects it may delete
 * (so a job refused over a limit leaves no source behind); a committed job is returned.
 */
type FormDeps = { db: Db; bucket: R2Bucket; clock?: () => number };
interface FormInput {
  req: Request;
  userId: string;
  retentionMs: number;
  maxFileBytes: number;
  limits: UserLimits;
  /**
   * Validated by the caller (lib/idempotency.ts), which answers a key whose job exists already. A twin with the
   * same key that commits first makes this job's insert fail on the key's unique index: its files are then
   * deleted as for any job not created, and the caller answers the twin's job.
   */
  idempotencyKey?: string | null;
}

export async function createJobFromForm(deps: FormDeps, input: FormInput): Promise<JobView> {
  const jobId = newId();
  try {
    return await ingestForm(deps, input, jobId);
  } catch (err) {
    // A retry of a request still uploading (the client took its answer for lost) is refused for the room that
    // very request holds. It is told to wait instead: once the first has made the job, asking again answers it.
    const key = input.idempotencyKey;
    if (!key || !(err instanceof AppError) || err.code !== "quota_exceeded") throw err;
    const since = (deps.clock ?? Date.now)() - INGEST_HOLD_MS;
    if (!(await isIngestInFlight(deps.db, { userId: input.userId, idempotencyKey: key, exceptId: jobId }, since).catch(() => false))) throw err;
    throw new TooManyRequestsError(
      "The first request with this Idempotency-Key is still being uploaded; ask again shortly for the job it makes",
      TWIN_RETRY_AFTER_SECONDS,
      "request_in_progress",
    );
  }
}

async function ingestForm(deps: FormDeps, input: FormInput, jobId: string): Promise<JobView> {
  const { db, bucket } = deps;
  const clock = deps.clock ?? Date.now;
  let variationsPerVideo = DEFAULT_VARIATIONS_PER_VIDEO;
  let countSeen = false;
  let effects: JobEffects | undefined;
  const { limits } = input;
  const usage = await getUserUsage(db, input.userId);
  const declared = Number(input.req.headers.get("content-length") ?? NaN);
  const before = exceededQuota(usage, limits, {
    activeJobs: 1,
    queuedVariations: 1,
    storageBytes: Number.isFinite(declared) ? Math.max(0, declared - FORM_OVERHEAD_BYTES) : 0,
  });
  if (before) {
    // Cancelling the body lets the route's lingering wrapper (lib/lingering.ts) drain it before the answer goes out.
    await input.req.body?.cancel().catch(() => {});
    throw quotaError(before);
  }
  const quota: FormQuota = {
    bytesLeft: limits.storageBytes - usage.storageBytes,
    exceeded: (requestedBytes) =>
      quotaError({ name: "storage", used: usage.storageBytes, requested: requestedBytes, limit: limits.storageBytes }),
    beforeFile: (index) => {
      // Before the count arrives (it may follow the files), one variation per file is all that is certain.
      const perVideo = countSeen ? variationsPerVideo : 1;
      const over = exceededQuota(usage, limits, { queuedVariations: (index + 1) * perVideo });
      if (over) throw quotaError(over);
    },
  };
  let started = false;
  let touchedAt = 0;
  // The room this upload holds of the storage quota (ingests.reserved_bytes): its declared length up front, so a
  // second upload started meanwhile sees it taken; grown ahead of the bytes when the length was not declared.
  const ceiling = Number.isFinite(declared) ? declared : Infinity;
  // The whole declared length (framing included) where it fits: a second upload must not fit into the margin.
  let reserved = Number.isFinite(declared) ? Math.max(0, Math.min(declared, quota.bytesLeft)) : 0;
  // The stored bytes the ingest row last recorded.
  let recorded = 0;
  const grow = async (storedBytes: number, now: number) => {
    const ahead = Math.max(storedBytes, Math.min(storedBytes + RESERVE_STEP_BYTES, ceiling));
    const held = await reserveIngest(db, { id: jobId, userId: input.userId, neededBytes: storedBytes, aheadBytes: ahead, limits }, now);
    if (held === "gone") throw stalled();
    // The quota let it have less than a step ahead: asking again before it is needed would only repeat the write.
    cappedByQuota = held < ahead;
    reserved = held;
    recorded = storedBytes;
  };
  let cappedByQuota = false;
  // After a write the database did not answer, the next try waits until then: a hung database made every chunk wait
  // out its timeout (the upload slowed to a crawl) and asked it again per chunk.
  let retryAt = 0;
  const ingest: IngestHooks = {
    begin: async () => {
      touchedAt = clock();
      // Before the insert: a reply lost after it committed still leaves a row to abandon (and its room to give back).
      started = true;
      await startIngest(db, { id: jobId, userId: input.userId, reservedBytes: reserved, limits, idempotencyKey: input.idempotencyKey }, touchedAt);
    },
    touch: async (storedBytes) => {
      const now = clock();
      // Out of room: these bytes are not stored without more, so a failure here ends the upload.
      if (storedBytes > reserved) {
        await grow(storedBytes, now);
        touchedAt = now;
        return;
      }
      if (now < retryAt) return;
      // Without a declared length, room is asked for a quarter step before it runs out: a database that does not
      // answer then costs a later try, not the upload.
      const growAhead = reserved < ceiling && !cappedByQuota && storedBytes > reserved - RESERVE_STEP_BYTES / 4;
      // Also every RESERVE_STEP_BYTES stored: what the row says is stored is the room a silence leaves it.
      if (!growAhead && now - touchedAt < INGEST_TOUCH_MS && storedBytes - recorded < RESERVE_STEP_BYTES) return;
      try {
        if (growAhead) {
          await grow(storedBytes, now);
          touchedAt = now;
          return;
        }
        const held = await touchIngest(db, jobId, storedBytes, now);
        touchedAt = now;
        recorded = storedBytes;
        if (held === null) throw stalled();
        // The cron gave the room back after a silence: ask for it again, through the quota check (another upload may
        // have been let in on it meanwhile, and keeps it).
        if (held < reserved) {
          reserved = held;
          if (storedBytes > held) await grow(storedBytes, now);
        }
      } catch (err) {
        // The row only needs a touch within INGEST_HOLD_MS (minutes), and room is still held: a database that did
        // not answer is asked again later, instead of throwing away everything this upload has stored.
        if (!isDbUnavailable(err) && !isDbBusy(err)) throw err;
        retryAt = now + INGEST_RETRY_MS;
      }
    },
  };
  let form: ReceivedForm;
  try {
    form = await receiveJobForm(input.req, {
      bucket,
      jobId,
      maxFileBytes: input.maxFileBytes,
      checkField: (name, value) => {
        // Checked as the field arrives: bad effects refuse the upload before (or as soon as) anything is stored.
        if (name === "effects") effects = parseWith(EffectsField, value, "effects");
        if (name !== "variations") return;
        variationsPerVideo = parseWith(VariationsCount, value, "variations");
        countSeen = true;
      },
      ingest,
      quota,
      book: multipartBook(db, clock),
    });
  } catch (err) {
    // Its objects are deleted already; a row left behind (database down) is reaped by the orphan rule.
    if (started) await abandonIngest(db, jobId).catch(() => {});
    throw err;
  }
  const newJob = {
    id: jobId,
    userId: input.userId,
    variationsPerVideo,
    effects,
    retentionMs: input.retentionMs,
    sources: form.sources,
    limits,
    idempotencyKey: input.idempotencyKey ?? null,
  };
  try {
    return await createJobFromIngest(db, newJob, clock());
  } catch (err) {
    // Whether the batch committed is unknown when its reply was lost; the ingest row settles it (see
    // createJobFromIngest). `nobodys`: no job exists and none can be created any more, so the objects may go.
    const abandoned = await abandonIngest(db, jobId).catch(() => null);
    let nobodys = abandoned === true;
    let reply = err;
    if (abandoned === false) {
      // The row is gone: the batch committed and only its reply was lost, or the ingest was reaped as stale.
      const job = await getJob(db, { jobId, viewer: ownerViewer(input.userId) }, clock()).catch((e: unknown) => (e instanceof NotFoundError ? null : undefined));
      if (job) return job;
      if (job === null) {
        nobodys = true;
        reply = stalled();
      }
    }
    if (nobodys) {
      await deleteKeys(bucket, form.sources.map((s) => s.objectKey)).catch((e: unknown) =>
        console.error("could not delete the sources of a job that was not created (the orphan sweep will)", e),
      );
    }
    // Otherwise unknown (database unreachable): the objects stay; if no job was created the orphan rule removes them.
    throw reply;
  }
}

function stalled(): ConflictError {
  return new ConflictError("upload_expired", "The upload stalled for more than an hour and was dropped; send it again");
}
