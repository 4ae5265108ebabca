import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../edge/index";
import { Job } from "../../edge/lib/schemas";
import { call, fakeMp4, fakeWebm, formBody, jobRow, ORIGIN, sameBytes, signIn, variationsOf, type Session } from "./helpers";

type JobBody = ReturnType<typeof Job.parse>;

async function postForm(s: Session, parts: Parameters<typeof formBody>[0]) {
  const { body, contentType } = formBody(parts);
  return s.call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType } });
}

async function bytesOf(key: string): Promise<Uint8Array> {
  const obj = await env.BUCKET.get(key);
  return new Uint8Array(await obj!.arrayBuffer());
}

async function allSourceKeys(): Promise<string[]> {
  return (await env.BUCKET.list({ prefix: "sources/" })).objects.map((o) => o.key).sort();
}

async function sourceKeysOf(jobId: string): Promise<string[]> {
  return (await env.BUCKET.list({ prefix: `sources/${jobId}/` })).objects.map((o) => o.key);
}

describe("POST /api/jobs (multipart)", () => {
  it("streams the videos to storage and answers 202 with a queued Job", async () => {
    const s = await signIn();
    const a = fakeMp4(3000, 1);
    const b = fakeWebm(2000);
    const res = await postForm(s, [
      { name: "variations", value: "3" },
      { name: "videos", filename: "beach.mp4", bytes: a },
      { name: "videos", filename: "city.webm", bytes: b, type: "video/webm" },
    ]);
    expect(res.status).toBe(202);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({
      status: "queued",
      variationsPerVideo: 3,
      totalVariations: 6,
      completedVariations: 0,
      progress: 0,
      downloadUrl: null,
      startedAt: null,
    });
    expect(job.files.map((f) => [f.name, f.size, f.status])).toEqual([
      ["beach.mp4", 3000, "queued"],
      ["city.webm", 2000, "queued"],
    ]);
    expect(job.files[0]!.variations!.map((v) => v.index)).toEqual([1, 2, 3]);
    expect(Date.parse(job.createdAt)).toBeGreaterThan(Date.now() - 60_000);

    const row = await jobRow(job.id);
    expect(row!.retentionMs).toBe(24 * 60 * 60 * 1000);
    const vars = await variationsOf(job.id);
    expect(vars).toHaveLength(6);
    expect(new Set(vars.map((v) => v.seed)).size).toBe(6);
    expect(vars.every((v) => v.status === "queued" && v.seed > 0)).toBe(true);

    const keys = await sourceKeysOf(job.id);
    expect(keys).toHaveLength(2);
    const stored = await Promise.all(job.files.map((f) => bytesOf(`sources/${job.id}/${f.id}`)));
    expect(stored[0]).toEqual(a);
    expect(stored[1]).toEqual(b);
    expect((await env.BUCKET.head(`sources/${job.id}/${job.files[1]!.id}`))!.httpMetadata!.contentType).toBe("video/webm");
  });

  it("defaults to 5 variations per video", async () => {
    const s = await signIn();
    const res = await postForm(s, [{ name: "videos", filename: "a.mov", bytes: fakeMp4(100) }]);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ variationsPerVideo: 5, totalVariations: 5 });
  });

  it("stores a file larger than one R2 part byte-exactly through a multipart upload", async () => {
    const s = await signIn();
    const big = fakeMp4(8 * 1024 * 1024 + 123_457, 3);
    const res = await postForm(s, [
      { name: "videos", filename: "big.mp4", bytes: big },
      { name: "variations", value: "1" },
    ]);
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobBody;
    expect(job.files[0]!.size).toBe(big.length);
    const stored = await bytesOf(`sources/${job.id}/${job.files[0]!.id}`);
    expect(stored.length).toBe(big.length);
    expect(sameBytes(stored, big)).toBe(true);
  });

  it("answers 415 for content that is not MP4/MOV/M4V/WebM/MKV, whatever the name says, and stores nothing", async () => {
    const s = await signIn();
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...new Uint8Array(200)]);
    // Storage is per test file here, and tests in a file run one at a time: the listing is this test's to compare.
    const before = await allSourceKeys();
    const res = await postForm(s, [
      { name: "videos", filename: "ok.mp4", bytes: fakeMp4(500) },
      { name: "videos", filename: "fake.mp4", bytes: png },
    ]);
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ error: { code: "unsupported_media_type" } });
    expect(await allSourceKeys()).toEqual(before);
  });

  it("answers 400 for an empty file", async () => {
    const s = await signIn();
    const res = await postForm(s, [{ name: "videos", filename: "empty.mp4", bytes: new Uint8Array(0) }]);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { field: "videos" } });
  });

  it("answers 400 naming the field for bad counts", async () => {
    const s = await signIn();
    const none = await postForm(s, [{ name: "variations", value: "3" }]);
    expect(none.status).toBe(400);
    expect(await none.json()).toMatchObject({ error: { field: "videos" } });

    const eleven = await postForm(
      s,
      Array.from({ length: 11 }, (_, i) => ({ name: "videos", filename: `v${i}.mp4`, bytes: fakeMp4(64) })),
    );
    expect(eleven.status).toBe(400);
    expect(await eleven.json()).toMatchObject({ error: { field: "videos" } });

    for (const value of ["0", "21", "abc", "2.5"]) {
      const res = await postForm(s, [
        { name: "variations", value },
        { name: "videos", filename: "a.mp4", bytes: fakeMp4(64) },
      ]);
      expect(res.status, value).toBe(400);
      expect(await res.json()).toMatchObject({ error: { field: "variations" } });
    }
  });

  it("answers 400 for a file under an unexpected field name", async () => {
    const s = await signIn();
    const res = await postForm(s, [{ name: "file", filename: "a.mp4", bytes: fakeMp4(64) }]);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { field: "file" } });
  });

  it("answers 413 for a file over MAX_UPLOAD_BYTES and removes what it stored", async () => {
    const s = await signIn();
    const { body, contentType } = formBody([
      { name: "videos", filename: "small.mp4", bytes: fakeMp4(1000) },
      { name: "videos", filename: "big.mp4", bytes: fakeMp4(5000) },
    ]);
    const before = await allSourceKeys();
    const small = { ...env, MAX_UPLOAD_BYTES: "4096" };
    const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const req = new Request(`${ORIGIN}/api/jobs`, {
      method: "POST",
      body,
      headers: { "content-type": contentType, cookie: s.cookie, origin: ORIGIN },
    });
    const res = await worker.fetch(req, small, ctx);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { code: "too_large" } });
    expect(await allSourceKeys()).toEqual(before);
  });

  it("answers 400 for a malformed multipart body and 415 for other content types", async () => {
    const s = await signIn();
    const broken = await s.call("/api/jobs", {
      method: "POST",
      body: "--x\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"a.mp4\"\r\n\r\nabc",
      headers: { "content-type": "multipart/form-data; boundary=x" },
    });
    expect(broken.status).toBe(400);
    const text = await s.call("/api/jobs", { method: "POST", body: "hi", headers: { "content-type": "text/plain" } });
    expect(text.status).toBe(415);
  });

  it("answers 401 without a session or with the runner token, and 403 for a cross-origin post", async () => {
    const { body, contentType } = formBody([{ name: "videos", filename: "a.mp4", bytes: fakeMp4(64) }]);
    expect((await call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType } })).status).toBe(401);
    expect(
      (await call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType }, token: env.RUNNER_TOKEN }))
        .status,
    ).toBe(401);
    const s = await signIn();
    const csrf = await s.call("/api/jobs", {
      method: "POST",
      body,
      headers: { "content-type": contentType },
      origin: "https://evil.example",
    });
    expect(csrf.status).toBe(403);
  });

  it("accepts an API token instead of a cookie", async () => {
    const s = await signIn();
    const { token } = (await (await s.call("/api/tokens", { method: "POST", json: { name: "cli" } })).json()) as { token: string };
    const { body, contentType } = formBody([{ name: "videos", filename: "a.mp4", bytes: fakeMp4(64) }]);
    const res = await call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType }, token });
    expect(res.status).toBe(202);
  });
});
