import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { recordUploadPart } from "../../db/queries/uploads";
import { sources, uploadParts, uploads } from "../../db/schema";
import { Job } from "../../edge/lib/schemas";
import { putUploadPart } from "../../edge/lib/uploads";
import { call, db, fakeMp4, sameBytes, signIn, type Session } from "./helpers";

const MiB = 1024 * 1024;

interface Created {
  id: string;
  partSize: number;
  partCount: number;
}

async function start(s: Session, filename: string, size: number): Promise<Created> {
  const res = await s.call("/api/uploads", { method: "POST", json: { filename, size } });
  expect(res.status).toBe(201);
  return (await res.json()) as Created;
}

function putPart(s: Session, id: string, n: number, bytes: Uint8Array, init: { origin?: string } = {}) {
  return s.call(`/api/uploads/${id}/parts/${n}`, {
    method: "PUT",
    body: bytes,
    headers: { "content-type": "application/octet-stream" },
    ...init,
  });
}

describe("large-file uploads", () => {
  it("uploads in parts (any order, with a retry), completes, and feeds a job by JSON", async () => {
    const s = await signIn();
    const file = fakeMp4(8 * MiB + 1000, 5);
    const up = await start(s, "long take.mp4", file.length);
    expect(up).toMatchObject({ partSize: 8 * MiB, partCount: 2 });

    const p2 = await putPart(s, up.id, 2, file.subarray(8 * MiB));
    expect(p2.status).toBe(200);
    expect(((await p2.json()) as { etag: string }).etag).toBeTruthy();
    expect((await putPart(s, up.id, 1, file.subarray(0, 8 * MiB))).status).toBe(200);
    // A retried part replaces the earlier one.
    expect((await putPart(s, up.id, 1, file.subarray(0, 8 * MiB))).status).toBe(200);

    const done = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect(done.status).toBe(200);
    expect(await done.json()).toEqual({ id: up.id, filename: "long take.mp4", size: file.length, status: "completed" });
    const stored = await env.BUCKET.get(`uploads/${up.id}`);
    expect(sameBytes(new Uint8Array(await stored!.arrayBuffer()), file)).toBe(true);

    const res = await s.call("/api/jobs", { method: "POST", json: { uploads: [up.id], variations: 2 } });
    expect(res.status).toBe(202);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({ status: "queued", totalVariations: 2 });
    expect(job.files[0]).toMatchObject({ name: "long take.mp4", size: file.length });
    const [src] = await db.select().from(sources).where(eq(sources.jobId, job.id));
    expect(src).toMatchObject({ objectKey: `uploads/${up.id}`, contentType: "video/mp4" });

    // The same request again (its answer was lost): 409, naming the job the upload fed, so the client can find it.
    const again = await s.call("/api/jobs", { method: "POST", json: { uploads: [up.id] } });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: { code: "upload_used" }, jobId: job.id });
  });

  it("plans a 2 GiB file as 256 parts of 8 MiB and refuses one byte more with 413", async () => {
    const s = await signIn();
    const up = await start(s, "huge.mkv", 2 * 1024 * MiB);
    expect(up).toMatchObject({ partSize: 8 * MiB, partCount: 256 });
    const res = await s.call("/api/uploads", { method: "POST", json: { filename: "huge.mkv", size: 2 * 1024 * MiB + 1 } });
    expect(res.status).toBe(413);
  });

  it("answers 400 for a part of the wrong size or number, 415 when part 1 is not a video", async () => {
    const s = await signIn();
    const up = await start(s, "a.mp4", 1000);
    expect(up.partCount).toBe(1);
    const short = await putPart(s, up.id, 1, fakeMp4(999));
    expect(short.status).toBe(400);
    expect(await short.json()).toMatchObject({ error: { field: "body" } });
    const beyond = await putPart(s, up.id, 2, fakeMp4(1000));
    expect(beyond.status).toBe(400);
    expect(await beyond.json()).toMatchObject({ error: { field: "n" } });
    const zero = await putPart(s, up.id, 0, fakeMp4(1000));
    expect(zero.status).toBe(400);
    const text = new TextEncoder().encode("x".repeat(1000));
    const notVideo = await putPart(s, up.id, 1, text);
    expect(notVideo.status).toBe(415);
  });

  it("counts a streamed part's bytes: one byte too many or too few answers 400 naming body, the exact size 200", async () => {
    const s = await signIn();
    const file = fakeMp4(1000);
    const up = await start(s, "streamed.mp4", file.length);
    // No Content-Length: the edge only knows the size once the stream ends.
    const streamed = (bytes: Uint8Array) =>
      s.call(`/api/uploads/${up.id}/parts/1`, {
        method: "PUT",
        body: new ReadableStream({
          start(c) {
            c.enqueue(bytes.slice(0, 600));
            c.enqueue(bytes.slice(600));
            c.close();
          },
        }),
        headers: { "content-type": "application/octet-stream" },
      });
    for (const bytes of [new Uint8Array([...file, 0]), file.subarray(0, 999)]) {
      const res = await streamed(bytes);
      expect([res.status, await res.json()]).toMatchObject([400, { error: { field: "body" } }]);
    }
    expect((await streamed(file)).status).toBe(200);
  });

  it("answers 409 upload_closed to a part whose R2 upload was removed meanwhile (the stale-upload rule)", async () => {
    const s = await signIn();
    const file = fakeMp4(1000);
    const up = await start(s, "removed.mp4", file.length);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, up.id));
    await env.BUCKET.resumeMultipartUpload(row!.objectKey, row!.r2UploadId).abort();
    const res = await putPart(s, up.id, 1, file);
    expect([res.status, await res.json()]).toMatchObject([409, { error: { code: "upload_closed" } }]);
  });

  it("answers 503 storage_unavailable (retryable, never 400 wrong size) when storage fails while taking a part, and the part can be sent again", async () => {
    const s = await signIn();
    const file = fakeMp4(1000);
    const up = await start(s, "storage hiccup.mp4", file.length);
    // R2 reads the first chunk, then fails (an internal error, a reset) and cancels the rest of the stream.
    const hiccup = {
      resumeMultipartUpload: () => ({
        async uploadPart(_n: number, body: ReadableStream<Uint8Array>) {
          const reader = body.getReader();
          await reader.read();
          await reader.cancel(new Error("storage went away"));
          throw new Error("uploadPart: We encountered an internal error. Please try again. (10001)");
        },
      }),
    } as unknown as R2Bucket;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(file.slice(0, 500));
        c.enqueue(file.slice(500));
        c.close();
      },
    });
    const err = await putUploadPart(
      { db, bucket: hiccup },
      { user: { id: s.id, email: s.email, role: "user" }, uploadId: up.id, partNumber: 1, body, contentLength: file.length },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, code: "storage_unavailable" });
    // Nothing was recorded; the same part sent again through the API is taken.
    expect(await db.select().from(uploadParts).where(eq(uploadParts.uploadId, up.id))).toEqual([]);
    expect((await putPart(s, up.id, 1, file)).status).toBe(200);
  });

  /** A signed-in user's one-part upload with its part stored, and the R2 multipart upload behind it. */
  async function uploadedOnePart(name: string) {
    const s = await signIn();
    const file = fakeMp4(1000);
    const up = await start(s, name, file.length);
    expect((await putPart(s, up.id, 1, file)).status).toBe(200);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, up.id));
    return { s, up, file, r2: env.BUCKET.resumeMultipartUpload(row!.objectKey, row!.r2UploadId) };
  }

  it("answers 409 upload_closed to a complete whose R2 upload was removed meanwhile, and the upload is not marked completed", async () => {
    const { s, up, r2 } = await uploadedOnePart("removed-late.mp4");
    await r2.abort();
    const res = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect([res.status, await res.json()]).toMatchObject([409, { error: { code: "upload_closed" } }]);
    const [after] = await db.select().from(uploads).where(eq(uploads.id, up.id));
    expect(after!.status).toBe("uploading");
  });

  it("answers 409 part_mismatch (not 500) when a part sent twice at once left storage and the record disagreeing, and completes once the part is sent again", async () => {
    const { s, up, file } = await uploadedOnePart("sent-twice.mp4");
    const [first] = await db.select().from(uploadParts).where(eq(uploadParts.uploadId, up.id));
    // Two PUTs of part 1 at once with different bytes: R2 keeps the one that finished last, the database the ETag
    // recorded last — here the other one.
    const other = fakeMp4(file.length, 7);
    expect((await putPart(s, up.id, 1, other)).status).toBe(200);
    await db.update(uploadParts).set({ etag: first!.etag }).where(eq(uploadParts.uploadId, up.id));
    const res = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect([res.status, await res.json()]).toMatchObject([409, { error: { code: "part_mismatch" } }]);
    const [after] = await db.select().from(uploads).where(eq(uploads.id, up.id));
    expect(after!.status).toBe("uploading");
    // The client sends the part again; complete then stores exactly those bytes.
    expect((await putPart(s, up.id, 1, file)).status).toBe(200);
    expect((await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" })).status).toBe(200);
    expect(sameBytes(new Uint8Array(await (await env.BUCKET.get(`uploads/${up.id}`))!.arrayBuffer()), file)).toBe(true);
  });

  it("answers 200 to a complete retried after R2 stored the object but the first answer was lost, and the upload feeds a job", async () => {
    const { s, up, r2, file } = await uploadedOnePart("retried.mp4");
    // The first complete got as far as R2 (the object is stored) and no further: no answer, the row still uploading.
    const parts = await db.select().from(uploadParts).where(eq(uploadParts.uploadId, up.id));
    await r2.complete(parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag })));
    const retried = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect([retried.status, await retried.json()]).toEqual([200, { id: up.id, filename: "retried.mp4", size: file.length, status: "completed" }]);
    const job = await s.call("/api/jobs", { method: "POST", json: { uploads: [up.id], variations: 1 } });
    expect(job.status).toBe(202);
  });

  it("answers 400 naming the missing parts on complete, 200 again to a complete sent twice (a retry after a lost answer), and 409 to a part after it", async () => {
    const s = await signIn();
    const file = fakeMp4(8 * MiB + 10);
    const up = await start(s, "b.mp4", file.length);
    await putPart(s, up.id, 1, file.subarray(0, 8 * MiB));
    const missing = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { field: "parts", message: expect.stringContaining("2") } });
    await putPart(s, up.id, 2, file.subarray(8 * MiB));
    const first = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect(first.status).toBe(200);
    const body = await first.json();
    const twice = await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    expect([twice.status, await twice.json()]).toEqual([200, body]);
    expect((await putPart(s, up.id, 1, file.subarray(0, 8 * MiB))).status).toBe(409);
  });

  it("refuses a job from an unfinished upload (409) or an unknown/foreign one (400 naming uploads)", async () => {
    const s = await signIn();
    const other = await signIn();
    const up = await start(s, "c.mp4", 100);
    const unfinished = await s.call("/api/jobs", { method: "POST", json: { uploads: [up.id] } });
    expect(unfinished.status).toBe(409);
    expect(await unfinished.json()).toMatchObject({ error: { code: "upload_incomplete" } });
    await putPart(s, up.id, 1, fakeMp4(100));
    await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" });
    const foreign = await other.call("/api/jobs", { method: "POST", json: { uploads: [up.id] } });
    expect(foreign.status).toBe(400);
    expect(await foreign.json()).toMatchObject({ error: { field: "uploads" } });
    expect((await other.call(`/api/uploads/${up.id}/parts/1`, { method: "PUT", body: fakeMp4(100) })).status).toBe(404);
    expect((await other.call(`/api/uploads/${up.id}/complete`, { method: "POST" })).status).toBe(404);
  });

  it("answers 400 naming the field for bad upload and job bodies", async () => {
    const s = await signIn();
    expect(await (await s.call("/api/uploads", { method: "POST", json: { filename: "", size: 10 } })).json()).toMatchObject({
      error: { field: "filename" },
    });
    expect(await (await s.call("/api/uploads", { method: "POST", json: { filename: "a", size: 0 } })).json()).toMatchObject({
      error: { field: "size" },
    });
    for (const [json, field] of [
      [{ uploads: [] }, "uploads"],
      [{ uploads: ["a", "a"] }, "uploads"],
      [{ uploads: Array.from({ length: 11 }, (_, i) => `u${i}`) }, "uploads"],
      [{ uploads: ["a"], variations: 21 }, "variations"],
    ] as const) {
      const res = await s.call("/api/jobs", { method: "POST", json });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { field } });
    }
  });

  it("drops an abandoned upload at its owner's request, so it stops counting against their open uploads at once", async () => {
    const s = await signIn();
    const open: Created[] = [];
    for (;;) {
      const res = await s.call("/api/uploads", { method: "POST", json: { filename: `take-${open.length}.mp4`, size: 9 * MiB } });
      if (res.status !== 201) {
        expect(res.status).toBe(409);
        break;
      }
      open.push((await res.json()) as Created);
      expect(open.length).toBeLessThanOrEqual(50);
    }
    // One upload got part 1 before its tab was closed: its R2 multipart upload holds bytes.
    expect((await putPart(s, open[0]!.id, 1, fakeMp4(8 * MiB))).status).toBe(200);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, open[0]!.id));
    const dropped = await s.call(`/api/uploads/${open[0]!.id}`, { method: "DELETE" });
    expect(dropped.status).toBe(204);
    expect(await db.select().from(uploads).where(eq(uploads.id, open[0]!.id))).toEqual([]);
    // R2's multipart upload is aborted with it: its stored part is gone and it takes no more.
    await expect(env.BUCKET.resumeMultipartUpload(row!.objectKey, row!.r2UploadId).uploadPart(2, fakeMp4(MiB))).rejects.toThrow();
    expect((await s.call("/api/uploads", { method: "POST", json: { filename: "again.mp4", size: 9 * MiB } })).status).toBe(201);
    // A part whose bytes were already on their way when the upload was dropped is refused, not a foreign-key error.
    expect(await recordUploadPart(db, { uploadId: open[0]!.id, partNumber: 2, etag: "late", size: 8 * MiB, now: Date.now() })).toBe(false);
    // A part for the dropped upload finds nothing; a second delete too.
    expect((await putPart(s, open[0]!.id, 2, fakeMp4(MiB))).status).toBe(404);
    expect((await s.call(`/api/uploads/${open[0]!.id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("keeps an upload a job uses (409 upload_used) and another user's (404), and checks CSRF", async () => {
    const [s, other] = [await signIn(), await signIn()];
    const up = await start(s, "used.mp4", 1000);
    expect((await putPart(s, up.id, 1, fakeMp4(1000))).status).toBe(200);
    expect((await s.call(`/api/uploads/${up.id}/complete`, { method: "POST" })).status).toBe(200);
    expect((await other.call(`/api/uploads/${up.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await s.call(`/api/uploads/${up.id}`, { method: "DELETE", origin: "https://evil.example" })).status).toBe(403);
    const job = await s.call("/api/jobs", { method: "POST", json: { uploads: [up.id] } });
    expect(job.status).toBe(202);
    const res = await s.call(`/api/uploads/${up.id}`, { method: "DELETE" });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "upload_used" } });
    expect(await env.BUCKET.head(`uploads/${up.id}`)).not.toBeNull();
  });

  it("answers 401 without a session or with the runner token, 403 cross-origin", async () => {
    const json = { filename: "a.mp4", size: 10 };
    expect((await call("/api/uploads", { method: "POST", json })).status).toBe(401);
    expect((await call("/api/uploads", { method: "POST", json, token: env.RUNNER_TOKEN })).status).toBe(401);
    const s = await signIn();
    expect((await s.call("/api/uploads", { method: "POST", json, origin: "https://evil.example" })).status).toBe(403);
    const up = await start(s, "a.mp4", 100);
    expect((await putPart(s, up.id, 1, fakeMp4(100), { origin: "https://evil.example" })).status).toBe(403);
    expect((await s.call(`/api/uploads/${up.id}/complete`, { method: "POST", origin: "https://evil.example" })).status).toBe(403);
  });
});
