import { Hono } from "hono";
import { userLimitsFrom } from "../../db/limits";
import type { AppEnv } from "../env";
import { requireUser } from "../lib/auth";
import { completeUpload, dropOwnUpload, putUploadPart, startUpload } from "../lib/uploads";
import { CreateUploadBody, PartParams } from "../lib/schemas";
import { idempotencyKeyOf, REPLAYED_HEADER } from "../lib/idempotency";
import { lingeringBody } from "../lib/lingering";
import { validate } from "../lib/validate";

/** Large files: R2 multipart through the edge, one request per part (each under the ~100 MB body cap). */
export const uploads = new Hono<AppEnv>()
  .use(requireUser)
  .post("/", validate("json", CreateUploadBody), async (c) => {
    const body = c.req.valid("json");
    const idempotencyKey = idempotencyKeyOf(c.req.raw);
    const deps = { db: c.get("db"), bucket: c.env.BUCKET };
    const config = c.get("config");
    const { replayed, ...created } = await startUpload(
      deps,
      { user: c.get("user"), ...body, maxBytes: config.MAX_UPLOAD_BYTES, limits: userLimitsFrom(config), idempotencyKey },
      Date.now(),
    );
    if (replayed) c.header(REPLAYED_HEADER, "true");
    return c.json(created, 201);
  })
  .put("/:id/parts/:n", lingeringBody(), validate("param", PartParams), async (c) => {
    const { id, n } = c.req.valid("param");
    const length = c.req.header("content-length");
    const part = await putUploadPart(
      { db: c.get("db"), bucket: c.env.BUCKET },
      {
        user: c.get("user"),
        uploadId: id,
        partNumber: n,
        body: c.req.raw.body,
        contentLength: length === undefined ? null : Number(length),
      },
    );
    return c.json(part);
  })
  .delete("/:id", async (c) => {
    await dropOwnUpload({ db: c.get("db"), bucket: c.env.BUCKET }, { user: c.get("user"), uploadId: c.req.param("id") });
    return c.body(null, 204);
  })
  .post("/:id/complete", async (c) => {
    const done = await completeUpload(
      { db: c.get("db"), bucket: c.env.BUCKET },
      { user: c.get("user"), uploadId: c.req.param("id") },
      Date.now(),
    );
    return c.json(done);
  });
