import { Hono, type Context } from "hono";
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
  getVariationThumbnailKey,
  listJobs,
  type JobView,
  type Reopened,
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
import { lingeringBody } from "../lib/lingering";
import { createJobOnce, idempotencyKeyOf, REPLAYED_HEADER } from "../lib/idempotency";
import { readOptionalJson, validate } from "../lib/validate";
import { withOutputDigests } from "../lib/output-digests";
import { nameEntries } from "../lib/zip";
import { answerZip } from "../lib/zip-resume";
import { queueSnapshot } from "../lib/queue-snapshot";

/** How long POST /api/jobs/:id/cancel (and /pause) waits for runners to stop before answering 202. */
export const CANCEL_WAIT_MS = 5_000;

/** A reopen's answer: the job, marked when it answers an earlier request with the same Idempotency-Key. */
function reopened(c: Context<AppEnv>, r: Reopened) {
  if (r.replayed) c.header(REPLAYED_HEADER, "true");
  return c.json(r.job);
}

export const jobs = new Hono<AppEnv>()
  .use(requireUser)
  .post("/", lingeringBody(), async (c) => {
    const db = c.get("db");
    const config = c.get("config");
    const user = c.get("user");
    const retentionMs = config.JOB_TTL_HOURS * 60 * 60 * 1000;
    const limits = userLimitsFrom(config);
    const contentType = c.req.header("content-type") ?? "";
    const key = idempotencyKeyOf(c.req.raw);

    const create = async (): Promise<JobView> => {
      if (/^multipart\/form-data/i.test(contentType)) {
        return await createJobFromForm(
          { db, bucket: c.env.BUCKET },
          { req: c.req.raw, userId: user.id, retentionMs, maxFileBytes: config.MAX_UPLOAD_BYTES, limits, idempotencyKey: key },
        );
      }
      if (/^application\/json/i.test(contentType)) {
        const raw = await c.req.json().catch(() => {
          throw new ValidationError("body: malformed JSON", "body");
        });
        const body = parseWith(CreateJobJson, raw);
        return await createJobFromUploads(
          db,
          {
            id: newId(),
            userId: user.id,
            variationsPerVideo: body.variations,
            effects: body.effects,
            retentionMs,
            uploadIds: body.uploads,
            limits,
            idempotencyKey: key,
          },
          Date.now(),
        );
      }
      throw new UnsupportedMediaTypeError(
        "Send multipart/form-data (videos, variations, effects) or JSON {uploads, variations, effects}",
        "unsupported_content_type",
      );
    };
    const { job, replayed } = await createJobOnce({ db, queue: queueSnapshot(c.get("config").LIBSQL_URL) }, { userId: user.id, key, request: c.req.raw }, create);
    if (replayed) c.header(REPLAYED_HEADER, "true");
    return c.json(job, 202);
  })
  .get("/", validate("query", ListJobsQuery), async (c) => {
    const q = c.req.valid("query");
    return c.json(await listJobs(c.get("db"), { viewer: c.get("user"), ...q }, Date.now(), queueSnapshot(c.get("config").LIBSQL_URL)));
  })
  .post("/cancel", validate("json", BulkCancelBody), async (c) => {
    const body = c.req.valid("json");
    const results = await cancelJobs(c.get("db"), { viewer: c.get("user"), ...body }, Date.now());
    return c.json({ results });
  })
  .get("/:id", async (c) => {
    const queue = queueSnapshot(c.get("config").LIBSQL_URL);
    return c.json(await getJob(c.get("db"), { jobId: c.req.param("id"), viewer: c.get("user") }, Date.now(), queue));
  })
  // The body is optional: none, or JSON with a reason. Hono's JSON validator skipped a reason sent as text/plain
  // (cancelled without it) and refused an empty application/json body (400, not cancelled).
  .post("/:id/cancel", async (c) => {
    const { reason } = await readOptionalJson(c.req.raw, CancelBody);
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
    const input = { jobId: c.req.param("id"), viewer: c.get("user"), limits: userLimitsFrom(c.get("config")), idempotencyKey: idempotencyKeyOf(c.req.raw) };
    return reopened(c, await resume({ db: c.get("db"), bucket: c.env.BUCKET }, input, Date.now()));
  })
  .post("/:id/retry", async (c) => {
    const input = { jobId: c.req.param("id"), viewer: c.get("user"), limits: userLimitsFrom(c.get("config")), idempotencyKey: idempotencyKeyOf(c.req.raw) };
    return reopened(c, await retryFailed({ db: c.get("db"), bucket: c.env.BUCKET }, input, Date.now()));
  })
  .post("/:id/more", validate("json", MoreVariationsBody), async (c) => {
    const { variations } = c.req.valid("json");
    const limits = userLimitsFrom(c.get("config"));
    const input = { jobId: c.req.param("id"), viewer: c.get("user"), limits, perSource: variations, idempotencyKey: idempotencyKeyOf(c.req.raw) };
    return reopened(c, await moreVariations({ db: c.get("db"), bucket: c.env.BUCKET }, input, Date.now()));
  })
  .get("/:id/download", async (c) => {
    const { job, entries } = await getJobDownload(
      c.get("db"),
      { jobId: c.req.param("id"), viewer: c.get("user") },
      Date.now(),
    );
    const digested = await withOutputDigests({ db: c.get("db"), bucket: c.env.BUCKET }, job.id, nameEntries(entries));
    return answerZip(c.env.BUCKET, job, digested, { range: c.req.header("range"), ifRange: c.req.header("if-range") });
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
  .get("/:id/outputs/:outputId/thumbnail", async (c) => {
    const key = await getVariationThumbnailKey(
      c.get("db"),
      { jobId: c.req.param("id"), outputId: c.req.param("outputId"), viewer: c.get("user") },
      Date.now(),
    );
    const obj = await c.env.BUCKET.get(key);
    if (!obj) throw new NotFoundError("This variation has no thumbnail", "no_thumbnail");
    return new Response(obj.body, {
      headers: {
        "content-type": "image/jpeg",
        "content-length": String(obj.size),
        "cache-control": "private, max-age=3600",
      },
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
    if (!(await purgeJob({ db: c.get("db"), bucket: c.env.BUCKET }, jobId))) {
      // Not purged: reopened since the check (retry, resume, more: 409 job_active), or deleted meanwhile by a
      // second click or the expiry rule — then this delete's outcome holds (204).
      await assertJobDeletable(c.get("db"), { jobId, viewer: c.get("user") }).catch((err: unknown) => {
        if (!(err instanceof NotFoundError)) throw err;
      });
    }
    return c.body(null, 204);
  });
