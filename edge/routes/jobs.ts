import { Hono } from "hono";
import { NotFoundError, UnsupportedMediaTypeError, ValidationError } from "../../db/errors";
import { newId } from "../../db/ids";
import { userLimitsFrom } from "../../db/limits";
import {
  assertJobDeletable,
  cancelJobs,
  createJobFromUploads,
  getJob,
  getJobDownload,
  getJobOutput,
  getJobThumbnailKey,
  listJobs,
} from "../../db/queries/jobs";
import type { AppEnv } from "../env";
import { requireUser } from "../lib/auth";
import { cancelJob } from "../lib/cancel-job";
import { pauseAndWait } from "../lib/pause-job";
import { moreVariations, resume, retryFailed } from "../lib/reopen-job";
import { createJobFromForm } from "../lib/ingest";
import { serveObject } from "../lib/range";
import {
  BulkCancelBody,
  CancelBody,
  CreateJobJson,
  ListJobsQuery,
  MoreVariationsBody,
  parseWith,
} from "../lib/schemas";
import { purgeJob } from "../lib/storage";
import { validate } from "../lib/validate";
import { nameEntries, zipResponse } from "../lib/zip";

/** How long POST /api/jobs/:id/cancel (and /pause) waits for runners to stop before answering 202. */
export const CANCEL_WAIT_MS = 5_000;

/** How much of a refused upload's remaining body is read and dropped before answering (see `lingering`). */
const LINGER_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 5_000;

/**
 * The request with a body whose `cancel()` (what the form reader calls when it refuses an upload part-way: an 11th
 * file, a non-video, a file over the limit) first reads and drops what is left of the body, up to LINGER_BYTES or
 * LINGER_MS, and only then cancels it — the "lingering close" of HTTP servers. workerd resets the client's
 * connection when a response goes out while the request body is half read and cancelled, without a `Connection:
 * close`; `wrangler dev`'s proxy keeps that connection in its pool and sends the next request on it, which fails
 * (503 "Your worker restarted mid-request", as POSTs are not retried). A body read to its end leaves the connection
 * reusable, and a client still sending gets the 400/413/415 instead of a reset. Beyond the bounds the upload is cut
 * off as before: we do not receive gigabytes to refuse them.
 */
function lingering(req: Request): Request {
  if (!req.body) return req;
  const source = req.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await source.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeUp = new Promise<"time">((resolve) => (timer = setTimeout(() => resolve("time"), LINGER_MS)));
      try {
        for (let dropped = 0; dropped <= LINGER_BYTES; ) {
          const next = await Promise.race([source.read(), timeUp]);
          if (next === "time" || next.done) break;
          dropped += next.value.byteLength;
        }
      } catch {
        // The client went away while we drained: nothing left to be polite to.
      } finally {
        clearTimeout(timer);
      }
      await source.cancel(reason).catch(() => {});
    },
  });
  return new Request(req, { body });
}

export const jobs = new Hono<AppEnv>()
  .use(requireUser)
  .post("/", async (c) => {
    const db = c.get("db");
    const config = c.get("config");
    const user = c.get("user");
    const retentionMs = config.JOB_TTL_HOURS * 60 * 60 * 1000;
    const limits = userLimitsFrom(config);
    const contentType = c.req.header("content-type") ?? "";

    if (/^multipart\/form-data/i.test(contentType)) {
      const job = await createJobFromForm(
        { db, bucket: c.env.BUCKET },
        { req: lingering(c.req.raw), userId: user.id, retentionMs, maxFileBytes: config.MAX_UPLOAD_BYTES, limits },
      );
      return c.json(job, 202);
    }

    if (/^application\/json/i.test(contentType)) {
      const raw = await c.req.json().catch(() => {
        throw new ValidationError("body: malformed JSON", "body");
      });
      const body = parseWith(CreateJobJson, raw);
      const job = await createJobFromUploads(
        db,
        {
          id: newId(),
          userId: user.id,
          variationsPerVideo: body.variations,
          effects: body.effects,
          retentionMs,
          uploadIds: body.uploads,
          limits,
        },
        Date.now(),
      );
      return c.json(job, 202);
    }

    throw new UnsupportedMediaTypeError(
      "Send multipart/form-data (videos, variations, effects) or JSON {uploads, variations, effects}",
      "unsupported_content_type",
    );
  })
  .get("/", validate("query", ListJobsQuery), async (c) => {
    const q = c.req.valid("query");
    return c.json(await listJobs(c.get("db"), { viewer: c.get("user"), ...q }, Date.now()));
  })
  .post("/cancel", validate("json", BulkCancelBody), async (c) => {
    const body = c.req.valid("json");
    const results = await cancelJobs(c.get("db"), { viewer: c.get("user"), ...body }, Date.now());
    return c.json({ results });
  })
  .get("/:id", async (c) => {
    return c.json(await getJob(c.get("db"), { jobId: c.req.param("id"), viewer: c.get("user") }, Date.now()));
  })
  .post("/:id/cancel", validate("json", CancelBody), async (c) => {
    const { reason } = c.req.valid("json");
    const result = await cancelJob(
      c.get("db"),
      { jobId: c.req.param("id"), viewer: c.get("user"), reason },
      { now: Date.now(), waitMs: CANCEL_WAIT_MS },
    );
    return c.json(result.job, result.settled ? 200 : 202);
  })
  .post("/:id/pause", async (c) => {
    const result = await pauseAndWait(
      c.get("db"),
      { jobId: c.req.param("id"), viewer: c.get("user") },
      { now: Date.now(), waitMs: CANCEL_WAIT_MS },
    );
    return c.json(result.job, result.settled ? 200 : 202);
  })
  .post("/:id/resume", async (c) => {
    const input = { jobId: c.req.param("id"), viewer: c.get("user"), limits: userLimitsFrom(c.get("config")) };
    return c.json(await resume({ db: c.get("db"), bucket: c.env.BUCKET }, input, Date.now()));
  })
  .post("/:id/retry", async (c) => {
    const input = { jobId: c.req.param("id"), viewer: c.get("user"), limits: userLimitsFrom(c.get("config")) };
    return c.json(await retryFailed({ db: c.get("db"), bucket: c.env.BUCKET }, input, Date.now()));
  })
  .post("/:id/more", validate("json", MoreVariationsBody), async (c) => {
    const { variations } = c.req.valid("json");
    const input = { jobId: c.req.param("id"), viewer: c.get("user"), limits: userLimitsFrom(c.get("config")), perSource: variations };
    return c.json(await moreVariations({ db: c.get("db"), bucket: c.env.BUCKET }, input, Date.now()));
  })
  .get("/:id/download", async (c) => {
    const { job, entries } = await getJobDownload(
      c.get("db"),
      { jobId: c.req.param("id"), viewer: c.get("user") },
      Date.now(),
    );
    return zipResponse(c.env.BUCKET, nameEntries(entries), `video-refresher-${job.id}.zip`, job);
  })
  .get("/:id/outputs/:outputId", async (c) => {
    const output = await getJobOutput(
      c.get("db"),
      { jobId: c.req.param("id"), outputId: c.req.param("outputId"), viewer: c.get("user") },
      Date.now(),
    );
    return serveObject(c.env.BUCKET, output.key, {
      size: output.size,
      contentType: "video/mp4",
      rangeHeader: c.req.header("range"),
    });
  })
  .get("/:id/thumbnail", async (c) => {
    const key = await getJobThumbnailKey(c.get("db"), { jobId: c.req.param("id"), viewer: c.get("user") });
    const obj = await c.env.BUCKET.get(key);
    if (!obj) throw new NotFoundError("This job has no thumbnail", "no_thumbnail");
    return new Response(obj.body, {
      headers: {
        "content-type": obj.httpMetadata?.contentType ?? "image/jpeg",
        "content-length": String(obj.size),
        "cache-control": "private, max-age=3600",
      },
    });
  })
  .delete("/:id", async (c) => {
    const jobId = c.req.param("id");
    await assertJobDeletable(c.get("db"), { jobId, viewer: c.get("user") });
    await purgeJob({ db: c.get("db"), bucket: c.env.BUCKET }, jobId);
    return c.body(null, 204);
  });
