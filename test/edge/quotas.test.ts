import { env } from "cloudflare:workers";
import { and, count, eq } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import type { Db } from "../../db/client";
import { newId } from "../../db/ids";
import type { UserLimits } from "../../db/limits";
import { startIngest } from "../../db/queries/ingests";
import { getUserUsage } from "../../db/queries/quotas";
import { createJobFromIngest } from "../../db/queries/jobs";
import { createUser } from "../../db/queries/users";
import { ingests, jobs, uploads } from "../../db/schema";
import worker from "../../edge/index";
import { db, fakeMp4, formBody, isolatedDb, ORIGIN, seedJob, signIn, type Session } from "./helpers";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

/** Calls the worker as `s` with these environment variables on top of the test bindings (small limits). */
function callWith(vars: Record<string, string>, s: Session, path: string, init: RequestInit & { json?: unknown } = {}) {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  headers.set("cookie", s.cookie);
  headers.set("origin", ORIGIN);
  let body = rest.body;
  if (json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(json);
  }
  return worker.fetch(new Request(ORIGIN + path, { ...rest, headers, body }), { ...env, ...vars }, ctx);
}

function postForm(vars: Record<string, string>, s: Session, parts: Parameters<typeof formBody>[0]) {
  const { body, contentType } = formBody(parts);
  return callWith(vars, s, "/api/jobs", { method: "POST", body, headers: { "content-type": contentType } });
}

/** What a refused request must not leave behind: the user's rows, and every source/upload object (this file's R2). */
async function footprint(userId: string) {
  const n = async (q: Promise<{ n: number }[]>) => (await q)[0]!.n;
  return {
    jobs: await n(db.select({ n: count() }).from(jobs).where(eq(jobs.userId, userId))),
    uploads: await n(db.select({ n: count() }).from(uploads).where(eq(uploads.userId, userId))),
    ingests: await n(db.select({ n: count() }).from(ingests).where(eq(ingests.userId, userId))),
    objects: (await env.BUCKET.list()).objects.map((o) => o.key).sort(),
  };
}

/** A completed large-file upload of `size` bytes, through the API. */
async function completedUpload(s: Session, size = 1000): Promise<string> {
  const started = await s.call("/api/uploads", { method: "POST", json: { filename: "a.mp4", size } });
  expect(started.status).toBe(201);
  const { id } = (await started.json()) as { id: string };
  const part = await s.call(`/api/uploads/${id}/parts/1`, { method: "PUT", body: fakeMp4(size) });
  expect(part.status).toBe(200);
  expect((await s.call(`/api/uploads/${id}/complete`, { method: "POST" })).status).toBe(200);
  return id;
}

afterEach(async () => {
  const listing = await env.BUCKET.list();
  if (listing.objects.length) await env.BUCKET.delete(listing.objects.map((o) => o.key));
});

describe("per-user limits on POST /api/jobs", () => {
  it("answers 429 quota_exceeded with Retry-After at the active-jobs limit, and creates nothing", async () => {
    const s = await signIn();
    await seedJob(s.id);
    const before = await footprint(s.id);
    const res = await postForm({ USER_ACTIVE_JOBS: "1" }, s, [{ name: "videos", filename: "a.mp4", bytes: fakeMp4(1000) }]);
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("active jobs") } });
    expect(await footprint(s.id)).toEqual(before);
  });

  it("answers 429 when queued variations would pass the limit, and 409 for a job larger than the limit on its own; sources are removed", async () => {
    const s = await signIn();
    await seedJob(s.id, { variations: 2 });
    const before = await footprint(s.id);
    const vars = { USER_QUEUED_VARIATIONS: "4" };
    // 2 queued + 2 × 2 = 6 > 4: the second file is refused before it is stored, the first one is deleted.
    const wait = await postForm(vars, s, [
      { name: "variations", value: "2" },
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(1000) },
      { name: "videos", filename: "b.mp4", bytes: fakeMp4(1000) },
    ]);
    expect(wait.status).toBe(429);
    expect(await wait.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("queued variations") } });
    expect(await footprint(s.id)).toEqual(before);

    // The count comes after the files here: only the commit-time check sees 5 > 4 on its own.
    const never = await postForm(vars, s, [
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(1000) },
      { name: "variations", value: "5" },
    ]);
    expect(never.status).toBe(409);
    expect(await never.json()).toMatchObject({ error: { code: "quota_exceeded" } });
    expect(await footprint(s.id)).toEqual(before);
  });

  it("answers 409 quota_exceeded from the declared Content-Length before storing a byte when storage would pass the quota", async () => {
    const s = await signIn();
    await seedJob(s.id); // 1000 bytes of sources
    const before = await footprint(s.id);
    const res = await postForm({ USER_STORAGE_BYTES: "100000" }, s, [
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(200_000) },
    ]);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("storage") } });
    expect(await footprint(s.id)).toEqual(before);
  });

  it("stops a body without Content-Length at the storage quota while streaming, and removes what it stored", async () => {
    const s = await signIn();
    const before = await footprint(s.id);
    const { body, contentType } = formBody([
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(3000, 1) },
      { name: "videos", filename: "b.mp4", bytes: fakeMp4(3000, 2) },
    ]);
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < body.length; at += 1024) controller.enqueue(body.slice(at, at + 1024));
        controller.close();
      },
    });
    const res = await callWith({ USER_STORAGE_BYTES: "5000" }, s, "/api/jobs", {
      method: "POST",
      body: chunked,
      headers: { "content-type": contentType },
      // @ts-expect-error workerd needs duplex for a streamed request body
      duplex: "half",
    });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "quota_exceeded" } });
    expect(await footprint(s.id)).toEqual(before);
  });

  it("refuses a job from uploads over the active-jobs limit, leaving the upload unused for a later job", async () => {
    const s = await signIn();
    const upload = await completedUpload(s);
    await seedJob(s.id);
    const before = await footprint(s.id);
    const refused = await callWith({ USER_ACTIVE_JOBS: "1" }, s, "/api/jobs", { method: "POST", json: { uploads: [upload] } });
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ error: { code: "quota_exceeded" } });
    expect(await footprint(s.id)).toEqual(before);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, upload));
    expect(row!.status).toBe("completed");
    expect((await callWith({ USER_ACTIVE_JOBS: "2" }, s, "/api/jobs", { method: "POST", json: { uploads: [upload] } })).status).toBe(202);
  });

  it("lets only one of two parallel job creations through at the edge of the active-jobs limit (uploads and forms)", async () => {
    const s = await signIn();
    const [a, b] = [await completedUpload(s), await completedUpload(s)];
    const vars = { USER_ACTIVE_JOBS: "1" };
    const fromUploads = await Promise.all(
      [a, b].map((id) => callWith(vars, s, "/api/jobs", { method: "POST", json: { uploads: [id] } })),
    );
    expect(fromUploads.map((r) => r.status).sort()).toEqual([202, 429]);

    const t = await signIn();
    const before = await footprint(t.id);
    const forms = await Promise.all(
      [1, 2].map((fill) => postForm(vars, t, [{ name: "videos", filename: "a.mp4", bytes: fakeMp4(20_000, fill) }])),
    );
    expect(forms.map((r) => r.status).sort()).toEqual([202, 429]);
    const after = await footprint(t.id);
    expect(after.jobs).toBe(before.jobs + 1);
    expect(after.ingests).toBe(0);
    // Only the created job's source is left.
    const created = (await forms.find((r) => r.status === 202)!.json()) as { id: string };
    expect(after.objects.filter((k) => k.startsWith("sources/"))).toEqual(
      (await env.BUCKET.list({ prefix: `sources/${created.id}/` })).objects.map((o) => o.key),
    );
  });
});

/**
 * Starts a form upload of `form` whose body stops after its first 2 KiB, and waits until the edge holds room for it
 * (its ingest is recorded and its first bytes arrived). `finish` sends the rest; `answer` is the request's answer.
 */
async function heldFormUpload(vars: Record<string, string>, s: Session, form: ReturnType<typeof formBody>, headers: Record<string, string>) {
  let sender!: ReadableStreamDefaultController<Uint8Array>;
  const held = new ReadableStream<Uint8Array>({ start: (c) => void (sender = c) });
  sender.enqueue(form.body.slice(0, 2048));
  // @ts-expect-error workerd needs duplex for a streamed request body
  const answer = callWith(vars, s, "/api/jobs", { method: "POST", body: held, headers, duplex: "half" });
  const holding = async () => ((await db.select().from(ingests).where(eq(ingests.userId, s.id)))[0]?.reservedBytes ?? 0) > 0;
  for (let i = 0; !(await holding()); i++) {
    if (i === 1000) throw new Error("the first upload holds no room after 10 s");
    await new Promise((r) => setTimeout(r, 10));
  }
  const finish = () => {
    sender.enqueue(form.body.slice(2048));
    sender.close();
  };
  return { answer, finish };
}

describe("storage held by form uploads in flight", () => {
  for (const declared of [true, false]) {
    it(`refuses a second form upload while the first${declared ? "" : " (no Content-Length)"} still streams into the room both would need, and creates the first`, async () => {
      const s = await signIn();
      const vars = { USER_STORAGE_BYTES: "10000" };
      const first = formBody([{ name: "videos", filename: "a.mp4", bytes: fakeMp4(6000, 1) }]);
      const headers: Record<string, string> = { "content-type": first.contentType };
      if (declared) headers["content-length"] = String(first.body.length);
      const pending = await heldFormUpload(vars, s, first, headers);

      const second = await postForm(vars, s, [{ name: "videos", filename: "b.mp4", bytes: fakeMp4(6000, 2) }]);
      expect(second.status).toBe(409);
      expect(await second.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("storage") } });
      expect((await footprint(s.id)).ingests).toBe(1);

      pending.finish();
      const created = await pending.answer;
      expect(created.status).toBe(202);
      const after = await footprint(s.id);
      expect([after.jobs, after.ingests, after.objects.length]).toEqual([1, 0, 1]);
      // The room it held is given back for what it stored.
      expect((await getUserUsage(db, s.id)).storageBytes).toBe(6000);
    });
  }
});

describe("a retry of a form upload still in flight (same Idempotency-Key)", () => {
  it("is told to wait (429 request_in_progress), not refused for the room the first holds, and then gets the first's job", async () => {
    const s = await signIn();
    const vars = { USER_STORAGE_BYTES: "10000" };
    const form = formBody([{ name: "videos", filename: "a.mp4", bytes: fakeMp4(6000, 1) }]);
    const headers = { "content-type": form.contentType, "content-length": String(form.body.length), "idempotency-key": "retry-me-1" };
    const pending = await heldFormUpload(vars, s, form, headers);

    // The client's retry (it took the first for lost): the same form, the same key.
    const retry = () => callWith(vars, s, "/api/jobs", { method: "POST", body: form.body, headers });
    const waiting = await retry();
    expect(waiting.status).toBe(429);
    expect(waiting.headers.get("retry-after")).toBe("5");
    expect(await waiting.json()).toMatchObject({ error: { code: "request_in_progress" } });
    // Another key is another job: that one is over the quota, as before.
    const other = await callWith(vars, s, "/api/jobs", { method: "POST", body: form.body, headers: { ...headers, "idempotency-key": "another-2" } });
    expect([other.status, ((await other.json()) as { error: { code: string } }).error.code]).toEqual([409, "quota_exceeded"]);

    pending.finish();
    const created = await pending.answer;
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const again = await retry();
    expect([again.status, again.headers.get("idempotent-replayed")]).toEqual([202, "true"]);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    expect((await footprint(s.id)).jobs).toBe(1);
  });
});

describe("the commit-time check (createJobFromIngest)", () => {
  it("creates one of two jobs committed in parallel when only one fits, whatever the reads before said", async () => {
    const own: Db = await isolatedDb();
    const userId = (await createUser(own, { email: `q-${newId()}@test.example`, password: "pw-for-quotas", role: "user" })).id;
    const limits: UserLimits = { storageBytes: 1e9, activeJobs: 1, queuedVariations: 100, openUploads: 10, unusedUploads: 100 };
    const attempt = async () => {
      const id = newId();
      await startIngest(own, { id, userId }, Date.now());
      const source = { id: newId(), name: "a.mp4", size: 100, contentType: "video/mp4", objectKey: `sources/${id}/x` };
      return createJobFromIngest(own, { id, userId, variationsPerVideo: 1, retentionMs: 1000, sources: [source], limits }, Date.now());
    };
    const results = await Promise.allSettled([attempt(), attempt()]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({ status: 429, code: "quota_exceeded" });
    expect(await own.select().from(jobs).where(eq(jobs.userId, userId))).toHaveLength(1);
    // The refused ingest is left for its request to abandon (and delete its objects).
    expect(await own.select().from(ingests).where(and(eq(ingests.userId, userId)))).toHaveLength(1);
  });
});

describe("per-user limits on POST /api/uploads", () => {
  it("answers 409 quota_exceeded past the open-uploads limit and for a declared size over the storage quota, recording nothing", async () => {
    const s = await signIn();
    const vars = { USER_OPEN_UPLOADS: "1", USER_STORAGE_BYTES: "50000" };
    expect((await callWith(vars, s, "/api/uploads", { method: "POST", json: { filename: "a.mp4", size: 1000 } })).status).toBe(201);
    const before = await footprint(s.id);
    const second = await callWith(vars, s, "/api/uploads", { method: "POST", json: { filename: "b.mp4", size: 1000 } });
    expect(second.status).toBe(409);
    expect(await second.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("open uploads") } });
    const big = await callWith({ USER_STORAGE_BYTES: "50000" }, s, "/api/uploads", {
      method: "POST",
      json: { filename: "c.mp4", size: 60_000 },
    });
    expect(big.status).toBe(409);
    expect(await big.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("storage") } });
    expect(await footprint(s.id)).toEqual(before);
  });
});

describe("unused uploads (USER_UNUSED_UPLOADS)", () => {
  it("answers 409 quota_exceeded naming unused uploads once a user holds that many uploads no job uses, open or completed; a job using some or a delete makes room", async () => {
    const s = await signIn();
    const vars = { USER_UNUSED_UPLOADS: "10" };
    const completed: string[] = [];
    for (let i = 0; i < 9; i++) completed.push(await completedUpload(s));
    const start = () => callWith(vars, s, "/api/uploads", { method: "POST", json: { filename: "more.mp4", size: 1000 } });
    expect((await start()).status).toBe(201);
    const before = await footprint(s.id);
    const refused = await start();
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("unused uploads") } });
    expect(await footprint(s.id)).toEqual(before);
    // Another user is not affected.
    expect((await callWith(vars, await signIn(), "/api/uploads", { method: "POST", json: { filename: "x.mp4", size: 1000 } })).status).toBe(201);
    // Deleting one makes room for one.
    expect((await s.call(`/api/uploads/${completed.pop()}`, { method: "DELETE" })).status).toBe(204);
    expect((await start()).status).toBe(201);
    expect((await start()).status).toBe(409);
    // So does starting a job with some: used uploads are not unused.
    const job = await callWith(vars, s, "/api/jobs", { method: "POST", json: { uploads: completed.slice(0, 2), variations: 1 } });
    expect(job.status).toBe(202);
    expect((await start()).status).toBe(201);
    const limits = (await (await callWith(vars, s, "/api/limits")).json()) as { limits: { unusedUploads: number }; usage: { unusedUploads: number } };
    expect([limits.limits.unusedUploads, limits.usage.unusedUploads]).toEqual([10, 9]);
  });

  it("refuses a setting below the files of one job with a readable message", async () => {
    const { ConfigSchema } = await import("../../edge/env");
    const base = { LIBSQL_URL: "http://127.0.0.1:8080", RUNNER_TOKEN: "0123456789abcdef0123" };
    expect(ConfigSchema.parse(base).USER_UNUSED_UPLOADS).toBe(100);
    const bad = ConfigSchema.safeParse({ ...base, USER_UNUSED_UPLOADS: "5" });
    expect(bad.error?.issues[0]?.message).toBe("USER_UNUSED_UPLOADS must be at least 10 (the files of one job)");
  });
});

describe("JSON body limit", () => {
  it("answers 413 too_large for a JSON body over JSON_BODY_LIMIT_BYTES, declared or streamed, and creates nothing", async () => {
    const s = await signIn();
    const vars = { JSON_BODY_LIMIT_BYTES: "200" };
    const name = "x".repeat(300);
    const declared = await callWith(vars, s, "/api/tokens", { method: "POST", json: { name } });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toMatchObject({ error: { code: "too_large" } });
    const bytes = new TextEncoder().encode(JSON.stringify({ name }));
    const streamed = await callWith(vars, s, "/api/tokens", {
      method: "POST",
      body: new ReadableStream({
        start(c) {
          c.enqueue(bytes);
          c.close();
        },
      }),
      headers: { "content-type": "application/json" },
      // @ts-expect-error workerd needs duplex for a streamed request body
      duplex: "half",
    });
    expect(streamed.status).toBe(413);
    const tokens = (await (await s.call("/api/tokens")).json()) as { tokens: unknown[] };
    expect(tokens.tokens).toEqual([]);
    expect((await callWith(vars, s, "/api/tokens", { method: "POST", json: { name: "cli" } })).status).toBe(201);
  });
});

describe("GET /api/limits", () => {
  it("shows the user's limits and what they use of them", async () => {
    const s = await signIn();
    await seedJob(s.id, { variations: 3 });
    const res = await callWith({ USER_ACTIVE_JOBS: "4" }, s, "/api/limits");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      limits: { activeJobs: 4, storageBytes: 10 * 1024 ** 3, queuedVariations: 400, openUploads: 10, unusedUploads: 100, sourceSeconds: 1800, sourceDimension: 4096 },
      usage: { activeJobs: 1, queuedVariations: 3, storageBytes: 1000, openUploads: 0, unusedUploads: 0 },
    });
  });
});
