// Bad-input corpus for the edge (workerd): every case answers a clean 4xx with the documented error shape —
// never a 5xx — and leaves no job behind that could get stuck, and nothing stored that no row records.
// Inputs that only a runner can judge (truncated or stream-less MP4s) live in test/stack/bad-input.test.ts.
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import worker from "../../edge/index";
import { finishVariation } from "../../db/queries/variations";
import { jobs, sessions } from "../../db/schema";
import { call, claimAll, db, fakeMp4, formBody, readZip, seedJob, signIn, variationsOf, type Session } from "./helpers";

const TEXT = new TextEncoder().encode("just some notes, not a video\n".repeat(20));
// The 8-byte PNG signature and the start of an IHDR chunk: a real image header.
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 1, 0, 0, 0, 1, 0, 8, 2, 0, 0, 0]);

/** The answer is a 4xx with `{error:{code,message}}` (and the named field, when given). */
async function expectClean4xx(res: Response, status: number, opts: { code?: string; field?: string | RegExp } = {}) {
  const text = await res.text();
  expect({ status: res.status, text: text.slice(0, 300) }).toMatchObject({ status });
  const body = JSON.parse(text) as { error: { code: string; message: string; field?: string } };
  expect(body.error.code).toMatch(/^[a-z_]+$/);
  expect(body.error.message.length).toBeGreaterThan(5);
  if (opts.code) expect(body.error.code).toBe(opts.code);
  if (typeof opts.field === "string") expect(body.error.field).toBe(opts.field);
  else if (opts.field) expect(body.error.field).toMatch(opts.field);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  return body;
}

/** Nothing half-made: the user has no job, and no source object exists beyond those present before. */
async function expectNothingLeft(s: Session, sourcesBefore: string[]) {
  expect(await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.userId, s.id))).toEqual([]);
  expect(await sourceKeys()).toEqual(sourcesBefore);
}

/** Response bodies are `unknown` in workerd's types; these tests check their shape themselves. */
const json = (res: Response): Promise<any> => res.json();

async function sourceKeys(): Promise<string[]> {
  return (await env.BUCKET.list({ prefix: "sources/" })).objects.map((o) => o.key).sort();
}

function postForm(s: Session, parts: Parameters<typeof formBody>[0], init: { headers?: Record<string, string> } = {}) {
  const { body, contentType } = formBody(parts);
  return s.call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType, ...init.headers } });
}

const video = (name = "clip.mp4", size = 2000) => ({ name: "videos", filename: name, bytes: fakeMp4(size) });

describe("bad input to POST /api/jobs (multipart)", () => {
  it("refuses a text file with 415, whatever its name says, storing nothing", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    await expectClean4xx(await postForm(s, [{ name: "videos", filename: "movie.mp4", bytes: TEXT }]), 415);
    await expectNothingLeft(s, before);
  });

  it("refuses a PNG image with 415", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    await expectClean4xx(await postForm(s, [{ name: "videos", filename: "frame.png", bytes: PNG, type: "image/png" }]), 415);
    await expectNothingLeft(s, before);
  });

  it("refuses a zero-byte file with 400 naming videos", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    await expectClean4xx(await postForm(s, [{ name: "videos", filename: "empty.mp4", bytes: new Uint8Array(0) }]), 400, { field: "videos" });
    await expectNothingLeft(s, before);
  });

  it("refuses a file over MAX_UPLOAD_BYTES with 413 and deletes what it had stored", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    const { body, contentType } = formBody([{ name: "variations", value: "2" }, video("big.mp4", 12_000)]);
    const req = new Request("http://edge.test/api/jobs", { method: "POST", body, headers: { "content-type": contentType, cookie: s.cookie, origin: "http://edge.test" } });
    const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    await expectClean4xx(await worker.fetch!(req, { ...env, MAX_UPLOAD_BYTES: "10000" } as never, ctx), 413);
    await expectNothingLeft(s, before);
  });

  it("refuses 11 files with 400 naming videos, keeping none of them", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    const eleven = Array.from({ length: 11 }, (_, i) => video(`c${i}.mp4`, 500));
    await expectClean4xx(await postForm(s, [{ name: "variations", value: "1" }, ...eleven]), 400, { field: "videos" });
    await expectNothingLeft(s, before);
  });

  // Not counts though z.coerce.number() reads them as 16, 10 and 1: nothing may be made of them.
  for (const bad of ["0", "21", "-1", "abc", "2.5", "", "0x10", "1e1", "true"]) {
    it(`refuses variations=${JSON.stringify(bad)} with 400 naming variations`, async () => {
      const s = await signIn();
      const before = await sourceKeys();
      await expectClean4xx(await postForm(s, [{ name: "variations", value: bad }, video()]), 400, { field: "variations" });
      await expectNothingLeft(s, before);
    });
  }

  it("refuses a form with no videos field with 400 naming videos", async () => {
    const s = await signIn();
    await expectClean4xx(await postForm(s, [{ name: "variations", value: "3" }]), 400, { field: "videos" });
    await expectNothingLeft(s, await sourceKeys());
  });

  it("refuses a multipart body cut off before its closing boundary with 400", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    const { body, contentType } = formBody([{ name: "variations", value: "1" }, video("cut.mp4", 3000)]);
    const res = await s.call("/api/jobs", { method: "POST", body: body.subarray(0, body.length - 700), headers: { "content-type": contentType } });
    await expectClean4xx(res, 400);
    await expectNothingLeft(s, before);
  });

  it("refuses a multipart content type without a boundary with 400", async () => {
    const s = await signIn();
    const { body } = formBody([video()]);
    await expectClean4xx(await s.call("/api/jobs", { method: "POST", body, headers: { "content-type": "multipart/form-data" } }), 400);
    await expectNothingLeft(s, await sourceKeys());
  });

  it("refuses a body sent as text/plain or as a urlencoded form with 415", async () => {
    const s = await signIn();
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "video/mp4"]) {
      await expectClean4xx(await s.call("/api/jobs", { method: "POST", body: "videos=x&variations=2", headers: { "content-type": type } }), 415);
    }
    await expectNothingLeft(s, await sourceKeys());
  });
});

describe("bad input to POST /api/jobs (JSON) and the upload API", () => {
  it("refuses malformed JSON with 400", async () => {
    const s = await signIn();
    await expectClean4xx(await s.call("/api/jobs", { method: "POST", body: '{"uploads": [', headers: { "content-type": "application/json" } }), 400);
    await expectNothingLeft(s, await sourceKeys());
  });

  it("refuses JSON without uploads, or with uploads that are not ids, with 400 naming uploads", async () => {
    const s = await signIn();
    for (const json of [{ variations: 2 }, { uploads: "abc" }, { uploads: [] }, { uploads: ["../../etc/passwd"] }, { uploads: [1, 2] }]) {
      await expectClean4xx(await s.call("/api/jobs", { method: "POST", json }), 400, { field: /^uploads(\.\d+)?$/ });
    }
    await expectNothingLeft(s, await sourceKeys());
  });

  it("refuses a variations count that is not a number (true, [7], \"0x10\") with 400 naming variations", async () => {
    const s = await signIn();
    const before = await sourceKeys();
    for (const variations of [true, [7], "0x10", "1e1", 2.5]) {
      await expectClean4xx(await s.call("/api/jobs", { method: "POST", json: { uploads: ["nosuchupload0000"], variations } }), 400, { field: "variations" });
    }
    await expectNothingLeft(s, before);
  });

  it("refuses unknown upload ids and another user's upload with 400 naming uploads", async () => {
    const owner = await signIn();
    const thief = await signIn();
    const created: any = await (await owner.call("/api/uploads", { method: "POST", json: { filename: "a.mp4", size: 3000 } })).json();
    await owner.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: fakeMp4(3000) });
    expect((await owner.call(`/api/uploads/${created.id}/complete`, { method: "POST" })).status).toBe(200);
    await expectClean4xx(await thief.call("/api/jobs", { method: "POST", json: { uploads: [created.id] } }), 400, { field: "uploads" });
    await expectClean4xx(await thief.call("/api/jobs", { method: "POST", json: { uploads: ["nosuchupload0000"] } }), 400, { field: "uploads" });
    await expectNothingLeft(thief, await sourceKeys());
  });

  it("refuses a huge declared size with 413, and an absurd, negative, fractional or missing one with 400 naming size", async () => {
    const s = await signIn();
    await expectClean4xx(await s.call("/api/uploads", { method: "POST", json: { filename: "huge.mp4", size: 3 * 2 ** 30 } }), 413);
    for (const size of [2 ** 53, -1, 0.5, "12", null]) {
      await expectClean4xx(await s.call("/api/uploads", { method: "POST", json: { filename: "x.mp4", size } }), 400, { field: "size" });
    }
    await expectClean4xx(await s.call("/api/uploads", { method: "POST", json: { filename: "x.mp4" } }), 400, { field: "size" });
  });

  it("refuses a missing part on complete with 400 naming parts, and the upload then cannot feed a job", async () => {
    const s = await signIn();
    // 8 MiB parts: 9 MiB is two parts; only the second is sent.
    const size = 9 * 2 ** 20;
    const created: any = await (await s.call("/api/uploads", { method: "POST", json: { filename: "two.mp4", size } })).json();
    expect(created.partCount).toBe(2);
    expect((await s.call(`/api/uploads/${created.id}/parts/2`, { method: "PUT", body: new Uint8Array(size - created.partSize) })).status).toBe(200);
    await expectClean4xx(await s.call(`/api/uploads/${created.id}/complete`, { method: "POST" }), 400, { field: "parts" });
    await expectClean4xx(await s.call("/api/jobs", { method: "POST", json: { uploads: [created.id] } }), 409, { code: "upload_incomplete" });
    await expectNothingLeft(s, await sourceKeys());
  });

  it("refuses an oversized part (declared or streamed without a length) with 400 naming body, keeping the upload usable", async () => {
    const s = await signIn();
    const created: any = await (await s.call("/api/uploads", { method: "POST", json: { filename: "one.mp4", size: 4000 } })).json();
    await expectClean4xx(await s.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: fakeMp4(4001) }), 400, { field: "body" });
    // A stream of unknown length (chunked on the wire) that runs past the part size.
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(fakeMp4(3000));
        c.enqueue(new Uint8Array(3000));
        c.close();
      },
    });
    await expectClean4xx(await s.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: chunked, duplex: "half" } as RequestInit), 400, { field: "body" });
    // The same part sent again, right this time, completes the upload.
    expect((await s.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: fakeMp4(4000) })).status).toBe(200);
    expect((await s.call(`/api/uploads/${created.id}/complete`, { method: "POST" })).status).toBe(200);
  });

  it("accepts a repeated part (the last one wins) but refuses part numbers 0, beyond the plan, or not numbers with 400 naming n", async () => {
    const s = await signIn();
    const created: any = await (await s.call("/api/uploads", { method: "POST", json: { filename: "one.mp4", size: 3000 } })).json();
    expect((await s.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: fakeMp4(3000, 1) })).status).toBe(200);
    expect((await s.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: fakeMp4(3000, 2) })).status).toBe(200);
    for (const n of ["0", "2", "-1", "abc", "1.5"]) {
      await expectClean4xx(await s.call(`/api/uploads/${created.id}/parts/${n}`, { method: "PUT", body: fakeMp4(3000) }), 400, { field: "n" });
    }
    expect((await s.call(`/api/uploads/${created.id}/complete`, { method: "POST" })).status).toBe(200);
    const job = await json(await s.call("/api/jobs", { method: "POST", json: { uploads: [created.id], variations: 1 } }));
    const stored = await env.BUCKET.get(`uploads/${created.id}`);
    const bytes = new Uint8Array(await stored!.arrayBuffer());
    expect(bytes[20]).toBe(fakeMp4(3000, 2)[20]); // the second send of part 1 is what was kept
    expect(job.status).toBe("queued");
  });
});

describe("bad ids, other users' ids, and hostile file names", () => {
  it("answers 404 for unknown job ids on every job route, and 400 for an id that is not an id", async () => {
    const s = await signIn();
    for (const [method, path] of [
      ["GET", "/api/jobs/nosuchjob000000000"],
      ["POST", "/api/jobs/nosuchjob000000000/cancel"],
      ["GET", "/api/jobs/nosuchjob000000000/download"],
      ["GET", "/api/jobs/nosuchjob000000000/thumbnail"],
      ["GET", "/api/jobs/nosuchjob000000000/outputs/nosuchoutput0000000"],
      ["DELETE", "/api/jobs/nosuchjob000000000"],
    ] as const) {
      await expectClean4xx(await s.call(path, { method }), 404);
    }
    const bulk = await s.call("/api/jobs/cancel", { method: "POST", json: { ids: ["nosuchjob000000000"] } });
    expect(bulk.status).toBe(200);
    expect((await json(bulk)).results).toEqual([expect.objectContaining({ id: "nosuchjob000000000", error: "not_found" })]);
    await expectClean4xx(await s.call("/api/jobs/cancel", { method: "POST", json: { ids: ["../etc"] } }), 400);
  });

  it("answers 404 for another user's job on every route, and changes nothing", async () => {
    const owner = await signIn();
    const other = await signIn();
    const job = await seedJob(owner.id, { variations: 1 });
    const [v] = await variationsOf(job.id);
    for (const [method, path] of [
      ["GET", `/api/jobs/${job.id}`],
      ["POST", `/api/jobs/${job.id}/cancel`],
      ["GET", `/api/jobs/${job.id}/download`],
      ["GET", `/api/jobs/${job.id}/thumbnail`],
      ["GET", `/api/jobs/${job.id}/outputs/${v!.id}`],
      ["DELETE", `/api/jobs/${job.id}`],
    ] as const) {
      await expectClean4xx(await other.call(path, { method }), 404);
    }
    const bulk = await json(await other.call("/api/jobs/cancel", { method: "POST", json: { ids: [job.id] } }));
    expect(bulk.results[0]).toMatchObject({ id: job.id, error: "not_found" });
    expect((await owner.call(`/api/jobs/${job.id}`).then(json)).status).toBe("queued");
  });

  it("keeps path-traversal, unicode, duplicate and header-injection file names as inert text: stored under generated keys, sanitised in the ZIP, never in a header", async () => {
    const s = await signIn();
    const names = ["../../etc/passwd.mp4", "..\\..\\win.ini.mp4", "Ünïcödé 🎬 ролик.mp4", "Ünïcödé 🎬 ролик.mp4", 'evil"\r\nX-Injected: 1.mp4', "nul\u0000byte.mp4"];
    const res = await postForm(s, [{ name: "variations", value: "1" }, ...names.map((n) => video(n, 900))]);
    expect(res.status).toBe(202);
    const job = await json(res);
    // Names are data: every object key is generated, whatever the name.
    const keys = (await env.BUCKET.list({ prefix: `sources/${job.id}/` })).objects.map((o) => o.key);
    expect(keys).toHaveLength(names.length);
    expect(keys.every((k) => /^sources\/[0-9a-z]+\/[0-9a-z]+$/.test(k))).toBe(true);
    expect(job.files.map((f: { name: string }) => f.name)).toHaveLength(names.length);
    expect(job.files[2].name).toBe("Ünïcödé 🎬 ролик.mp4");

    // Run it like a runner would, then download: ZIP entry names carry no separators, dots-only or control chars.
    await claimAll(job.id, `r-${job.id}`);
    for (const v of await variationsOf(job.id)) {
      const key = `outputs/${job.id}/${v.id}.mp4`;
      await env.BUCKET.put(key, fakeMp4(300));
      await finishVariation(db, { attempt: 1, variationId: v.id, runnerId: `r-${job.id}`, outputKey: key, outputSize: 300, now: Date.now() });
    }
    const zipRes = await s.call(`/api/jobs/${job.id}/download`);
    expect(zipRes.status).toBe(200);
    expect(zipRes.headers.get("x-injected")).toBeNull();
    expect(zipRes.headers.get("content-disposition")).toBe(`attachment; filename="video-refresher-${job.id}.zip"`);
    const all = readZip(new Uint8Array(await zipRes.arrayBuffer())).map((e) => e.name);
    expect(all.slice(-2)).toEqual(["manifest.json", "manifest.csv"]);
    const entries = all.slice(0, -2);
    expect(entries).toHaveLength(names.length);
    for (const name of entries) {
      const [folder, file, ...rest] = name.split("/");
      expect(rest).toEqual([]);
      expect(folder).not.toMatch(/^\.+$|[\\:\u0000-\u001f"]/);
      expect(file).toMatch(/_var01\.mp4$/);
      expect(file).not.toMatch(/[\\:\u0000-\u001f"]/);
    }
    // The duplicate unicode name got its own folder.
    expect(new Set(entries.map((e) => e.split("/")[0])).size).toBe(names.length);
  });
});

describe("bad credentials and cross-site requests", () => {
  it("answers 401 session_expired for an expired session cookie", async () => {
    const s = await signIn();
    await db.update(sessions).set({ expiresAt: Date.now() - 1000 }).where(eq(sessions.userId, s.id));
    await expectClean4xx(await s.call("/api/jobs"), 401);
    await expectClean4xx(await postForm(s, [video()]), 401);
    await expectNothingLeft(s, await sourceKeys());
  });

  it("answers 401 for a revoked API token", async () => {
    const s = await signIn();
    const created: any = await (await s.call("/api/tokens", { method: "POST", json: { name: "ci" } })).json();
    expect((await call("/api/jobs", { token: created.token })).status).toBe(200);
    expect((await s.call(`/api/tokens/${created.id}`, { method: "DELETE" })).status).toBe(204);
    await expectClean4xx(await call("/api/jobs", { token: created.token }), 401);
    const { body, contentType } = formBody([video()]);
    await expectClean4xx(await call("/api/jobs", { method: "POST", token: created.token, body, headers: { "content-type": contentType } }), 401);
    await expectNothingLeft(s, await sourceKeys());
  });

  it("answers 401 for the runner token on user routes", async () => {
    for (const [method, path] of [["GET", "/api/jobs"], ["GET", "/api/me"], ["POST", "/api/jobs"], ["POST", "/api/uploads"], ["GET", "/api/users"]] as const) {
      await expectClean4xx(await call(path, { method, token: env.RUNNER_TOKEN }), 401);
    }
  });

  it("answers 401 for a user session or API token on runner routes", async () => {
    const s = await signIn();
    const created: any = await (await s.call("/api/tokens", { method: "POST", json: { name: "x" } })).json();
    for (const auth of [{ cookie: s.cookie }, { token: created.token }]) {
      await expectClean4xx(await call("/internal/objects?prefix=outputs/abc/", auth), 401);
      await expectClean4xx(await call("/internal/objects/sources/abc/def", auth), 401);
      await expectClean4xx(await call("/internal/objects/outputs/abc/def.mp4", { ...auth, method: "PUT", body: "x", headers: { "content-length": "1" } }), 401);
    }
  });

  it("answers 403 csrf for a cross-origin cookie POST to create or cancel a job, creating and cancelling nothing", async () => {
    const s = await signIn();
    const job = await seedJob(s.id, { variations: 1 });
    const before = await sourceKeys();
    const { body, contentType } = formBody([video()]);
    await expectClean4xx(await s.call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType }, origin: "https://evil.example" }), 403, { code: "csrf" });
    await expectClean4xx(await s.call(`/api/jobs/${job.id}/cancel`, { method: "POST", origin: "https://evil.example" }), 403, { code: "csrf" });
    await expectClean4xx(await s.call(`/api/jobs/cancel`, { method: "POST", json: { status: "queued" }, origin: null }), 403, { code: "csrf" });
    expect((await s.call(`/api/jobs/${job.id}`).then(json)).status).toBe("queued");
    expect(await sourceKeys()).toEqual(before);
  });

  it("answers 400 for malformed JSON or wrong types on login, and 400 for bad list queries", async () => {
    await expectClean4xx(await call("/api/auth/login", { method: "POST", body: "{email", headers: { "content-type": "application/json" } }), 400);
    await expectClean4xx(await call("/api/auth/login", { method: "POST", json: { email: ["a"], password: 5 } }), 400);
    const s = await signIn();
    await expectClean4xx(await s.call("/api/jobs?limit=0"), 400, { field: "limit" });
    await expectClean4xx(await s.call("/api/jobs?limit=abc"), 400, { field: "limit" });
    await expectClean4xx(await s.call("/api/jobs?status=exploded"), 400, { field: "status" });
    await expectClean4xx(await s.call("/api/jobs?cursor=%00%00"), 400, { field: "cursor" });
  });
});
