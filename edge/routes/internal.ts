import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError, ConflictError, ForbiddenError, NotFoundError, PayloadTooLargeError, ValidationError } from "../../db/errors";
import { NO_SUCH_OBJECT, parseOutputKey } from "../../db/keys";
import { isObjectRecorded } from "../../db/queries/is-object-recorded";
import { findTicket, getJobOutputs, type TicketRow } from "../../db/queries/variations";
import type { AppEnv } from "../env";
import { parseRange } from "../lib/range";
import { multipartBook } from "../lib/multipart-book";
import { isNoSuchMultipartUpload } from "../lib/storage";
import { requireRunner } from "../lib/runner-auth";
import { mayAbort, mayDelete, mayList, mayRead, mayWrite, parseTicket, type DeleteFacts, type Refusal } from "../lib/runner-scope";
import { validate } from "../lib/validate";

/** Production Workers refuse request bodies near 100 MB: bigger outputs must come in multipart parts. */
export const MAX_BODY_BYTES = 100_000_000;

const SEGMENT = "[A-Za-z0-9][A-Za-z0-9._-]*";
const KEY = new RegExp(`^(sources|uploads|outputs|thumbs)/${SEGMENT}(/${SEGMENT})*$`);
const OUTPUT_PREFIX = new RegExp(`^outputs/${SEGMENT}/$`);

class LengthRequiredError extends AppError {
  constructor() {
    super(411, "length_required", "Send the body with a Content-Length (R2 needs the size up front)");
  }
}

class DigestMismatchError extends AppError {
  constructor() {
    super(400, "digest_mismatch", "The body's SHA-256 is not the one in X-Content-SHA256; nothing was stored");
  }
}

/** R2's refusal of a body whose checksum is not the one given (error 10037, BadDigest). */
function isBadDigest(err: unknown): boolean {
  return err instanceof Error && /\b10037\b|checksum you specified did not match/i.test(err.message);
}

const PutHeaders = z.object({ "x-content-sha256": z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex characters").optional() });

function checkKey(key: string): string {
  if (!KEY.test(key) || key.includes("..")) throw new ValidationError(`Invalid object key: ${key}`, "key");
  return key;
}

type Op = "read" | "write" | "delete" | "abort";

/**
 * The runner may do `op` on `key` only for the variation its ticket holds (edge/lib/runner-scope.ts decides from
 * the rows read here); otherwise 403 not_your_work. RUNNER_TOKEN was checked before (requireRunner).
 */
async function checkScope(c: Context<AppEnv>, op: Op, key: string): Promise<void> {
  const db = c.get("db");
  const ticket = parseTicket((name) => c.req.header(name));
  const now = Date.now();
  const row = ticket && op !== "delete" ? await findTicket(db, ticket.variationId) : null;
  let refusal: Refusal;
  if (op === "read") refusal = mayRead(key, ticket, row, now);
  else if (op === "write") refusal = mayWrite(key, ticket, row, now);
  else if (op === "delete") refusal = mayDelete(key, ticket, await deleteFacts(c, key, row));
  else {
    // The delete rule's rows are read only when the write rule refuses (a runner that lost its lease mid-upload).
    const facts = mayWrite(key, ticket, row, now) === null ? null : await deleteFacts(c, key, row);
    refusal = mayAbort(key, ticket, row, facts, now);
  }
  if (refusal) throw new ForbiddenError(refusal, "not_your_work");
}

async function deleteFacts(c: Context<AppEnv>, key: string, known: TicketRow | null): Promise<DeleteFacts> {
  const db = c.get("db");
  const parsed = parseOutputKey(key);
  if (parsed) {
    const variation = known?.variationId === parsed.variationId ? known : await findTicket(db, parsed.variationId);
    return { variation, jobStatus: null };
  }
  const jobId = /^outputs\/([^/]+)\//.exec(key)?.[1];
  return { variation: null, jobStatus: jobId ? ((await getJobOutputs(db, jobId))?.status ?? null) : null };
}

function contentTypeOf(key: string): string {
  if (key.endsWith(".mp4")) return "video/mp4";
  if (key.endsWith(".jpg")) return "image/jpeg";
  return "application/octet-stream";
}

/** The request body as a stream of exactly Content-Length bytes (put()/uploadPart() need a known length). */
function sizedBody(req: Request): { body: ReadableStream | string; size: number } {
  const raw = req.headers.get("content-length");
  if (raw === null || !/^\d+$/.test(raw)) throw new LengthRequiredError();
  const size = Number(raw);
  if (size > MAX_BODY_BYTES) {
    throw new PayloadTooLargeError(`Bodies above ${MAX_BODY_BYTES} bytes must use the multipart endpoints`);
  }
  if (size === 0 || !req.body) return { body: "", size: 0 };
  return { body: req.body.pipeThrough(new FixedLengthStream(size)), size };
}

/** R2 throws plain errors for an unknown or finished multipart upload id. */
async function r2Multipart<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AppError) throw err;
    if (isNoSuchMultipartUpload(err)) {
      throw new NotFoundError(`${what}: no such multipart upload`, "no_such_upload");
    }
    throw err;
  }
}

const KeyBody = z.object({ key: z.string().min(1).max(512) });
const KeyQuery = z.object({ key: z.string().min(1).max(512) });
const PartParam = z.object({ uploadId: z.string().min(1), n: z.coerce.number().int().min(1).max(10_000) });
const UploadParam = z.object({ uploadId: z.string().min(1) });
const CompleteBody = z.object({
  parts: z
    .array(z.object({ partNumber: z.number().int().min(1).max(10_000), etag: z.string().min(1) }))
    .min(1)
    .max(10_000),
  /**
   * The whole object's length. Optional for runners of the previous release. With it, a complete sent again after
   * the first one landed (its answer lost) is recognised: see the route.
   */
  size: z.number().int().min(0).optional(),
});
const ListQuery = z.object({ prefix: z.string().regex(OUTPUT_PREFIX, "prefix must be outputs/<jobId>/") });

/**
 * Blob endpoints for runners (Bearer RUNNER_TOKEN, then the ticket of the variation they hold): runners reach the
 * database directly but move bytes only through here. Sources stream down with Range support; outputs stream up
 * with a known length, in R2 multipart parts when large; a finished job's outputs can be listed and its unrecorded
 * ones deleted (orphan sweep).
 */
export const internal = new Hono<AppEnv>()
  .use(requireRunner)
  // The edge's clock (its cron and its lease checks use it): a runner compares its own with it, and the call tells
  // it whether its RUNNER_TOKEN is accepted, before its first claim and while it is idle.
  .get("/clock", (c) => c.json({ now: Date.now() }))
  .get("/objects", validate("query", ListQuery), async (c) => {
    const { prefix } = c.req.valid("query");
    // The orphan sweep lists a job's outputs once the job is over; while it runs, nobody needs the listing.
    const refusal = mayList((await getJobOutputs(c.get("db"), prefix.split("/")[1]!))?.status ?? null);
    if (refusal) throw new ForbiddenError(refusal, "not_your_work");
    const objects: { key: string; size: number; uploaded: string }[] = [];
    let cursor: string | undefined;
    do {
      const page = await c.env.BUCKET.list({ prefix, cursor });
      for (const o of page.objects) objects.push({ key: o.key, size: o.size, uploaded: o.uploaded.toISOString() });
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    return c.json({ objects });
  })
  .get("/objects/:key{.+}", async (c) => {
    const key = checkKey(c.req.param("key"));
    await checkScope(c, "read", key);
    const rangeHeader = c.req.header("range");
    const head = rangeHeader ? await c.env.BUCKET.head(key) : null;
    if (rangeHeader && !head) throw new NotFoundError(`No object ${key}`, NO_SUCH_OBJECT);
    const range = head ? parseRange(rangeHeader, head.size) : null;
    if (range === "unsatisfiable") {
      return c.body(null, 416, { "content-range": `bytes */${head!.size}` });
    }
    const obj = await c.env.BUCKET.get(key, range ? { range: { offset: range.start, length: range.end - range.start + 1 } } : {});
    if (!obj) throw new NotFoundError(`No object ${key}`, NO_SUCH_OBJECT);
    const headers: Record<string, string> = {
      "content-type": obj.httpMetadata?.contentType ?? contentTypeOf(key),
      "accept-ranges": "bytes",
      etag: obj.httpEtag,
    };
    if (range) {
      headers["content-range"] = `bytes ${range.start}-${range.end}/${obj.size}`;
      headers["content-length"] = String(range.end - range.start + 1);
      return c.body(obj.body, 206, headers);
    }
    headers["content-length"] = String(obj.size);
    return c.body(obj.body, 200, headers);
  })
  .put("/objects/:key{.+}", validate("header", PutHeaders), async (c) => {
    const key = checkKey(c.req.param("key"));
    await checkScope(c, "write", key);
    const { body, size } = sizedBody(c.req.raw);
    const sha256 = c.req.valid("header")["x-content-sha256"];
    // With the runner's digest, R2 itself refuses bytes that are not the ones the runner will record.
    const obj = await c.env.BUCKET.put(key, body, { httpMetadata: { contentType: contentTypeOf(key) }, ...(sha256 ? { sha256 } : {}) }).catch(
      (err: unknown) => {
        if (sha256 && isBadDigest(err)) throw new DigestMismatchError();
        throw err;
      },
    );
    return c.json({ key, size: obj?.size ?? size, etag: obj?.etag ?? null }, 201);
  })
  .delete("/objects/:key{.+}", async (c) => {
    const key = checkKey(c.req.param("key"));
    // Whatever a runner believes about its lease, an object the database records stays (issue: a lost reply
    // after a committed completion once made a runner delete the output the job reported as completed).
    if (await isObjectRecorded(c.get("db"), key)) {
      throw new ConflictError("object_recorded", "The database records this object; it is not deleted");
    }
    await checkScope(c, "delete", key);
    await c.env.BUCKET.delete(key);
    return c.body(null, 204);
  })
  .post("/uploads", validate("json", KeyBody), async (c) => {
    const key = checkKey(c.req.valid("json").key);
    await checkScope(c, "write", key);
    // On the record: a runner killed mid-upload (or whose abort failed, or whose create was sent again after a lost
    // answer) leaves an upload only the lifecycle rule can find.
    const mp = await multipartBook(c.get("db")).open(c.env.BUCKET, key, { httpMetadata: { contentType: contentTypeOf(key) } });
    return c.json({ key, uploadId: mp.uploadId }, 201);
  })
  .put("/uploads/:uploadId/parts/:n", validate("param", PartParam), validate("query", KeyQuery), async (c) => {
    const { uploadId, n } = c.req.valid("param");
    const key = checkKey(c.req.valid("query").key);
    await checkScope(c, "write", key);
    const { body } = sizedBody(c.req.raw);
    const part = await r2Multipart(`part ${n} of ${key}`, () =>
      c.env.BUCKET.resumeMultipartUpload(key, uploadId).uploadPart(n, body),
    );
    return c.json({ partNumber: part.partNumber, etag: part.etag });
  })
  .post("/uploads/:uploadId/complete", validate("param", UploadParam), validate("query", KeyQuery), validate("json", CompleteBody), async (c) => {
    const { uploadId } = c.req.valid("param");
    const key = checkKey(c.req.valid("query").key);
    await checkScope(c, "write", key);
    const { parts: unsorted, size } = c.req.valid("json");
    const parts = [...unsorted].sort((a, b) => a.partNumber - b.partNumber);
    const book = multipartBook(c.get("db"));
    try {
      const obj = await r2Multipart(`complete ${key}`, () => c.env.BUCKET.resumeMultipartUpload(key, uploadId).complete(parts));
      await book.closed({ uploadId, key });
      return c.json({ key, size: obj.size, etag: obj.etag });
    } catch (err) {
      // A complete that landed but whose answer was lost fails when the runner sends it again (no_such_upload in
      // miniflare; R2's exact error for it is not documented, so any failure of the call is checked). For an
      // attempt-scoped key (an output or its still: not the job's shared thumbnail) only this attempt's upload of
      // this file can have stored an object there, so one of the declared size is that upload's result. Failing
      // here cost the attempt and deleted a verified encode as unrecorded.
      if (size === undefined || !parseOutputKey(key)) throw err;
      const head = await c.env.BUCKET.head(key);
      if (!head || head.size !== size) throw err;
      // Only an upload R2 no longer has is done with: another failure says nothing about this one.
      if (err instanceof NotFoundError && err.code === "no_such_upload") await book.closed({ uploadId, key });
      return c.json({ key, size: head.size, etag: head.etag });
    }
  })
  .delete("/uploads/:uploadId", validate("param", UploadParam), validate("query", KeyQuery), async (c) => {
    const { uploadId } = c.req.valid("param");
    const key = checkKey(c.req.valid("query").key);
    await checkScope(c, "abort", key);
    await r2Multipart(`abort ${key}`, () => c.env.BUCKET.resumeMultipartUpload(key, uploadId).abort());
    await multipartBook(c.get("db")).closed({ uploadId, key });
    return c.body(null, 204);
  });
