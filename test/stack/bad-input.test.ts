// Bad-input corpus, part 2: what needs the real pieces — a runner judging files that pass the edge's sniff, and
// raw HTTP framing (chunked bodies, oversized bodies) through `wrangler dev`. Every case ends in a clean 4xx or a
// failed variation with a readable reason, never a 5xx, never a stuck job.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../db/client";
import { signInToEdge, type ApiSession } from "../helpers/api";
import { makeClip } from "../helpers/clips";
import { until } from "../helpers/until";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";
import { FAST, startRunnerProcess, type RunnerProcess } from "../helpers/runner";
import { freshDb, getVariationRows } from "../helpers/seed";
import { bucketObjects } from "../faults/inspect";
import { startWranglerDev, type WranglerDev } from "../helpers/wrangler";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const RUNNER_TOKEN = "bad-input-runner-token-0123456789";

let server: TestLibsqlServer;
let edge: WranglerDev;
let db: Db;
let user: ApiSession;
let runner: RunnerProcess;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-bad-input-"));
  server = await startTestLibsql();
  const fresh = await freshDb(server, "bad_input");
  db = fresh.db;
  // A 1 MiB upload limit, so "over the limit" is cheap to send.
  edge = await startWranglerDev({ libsqlUrl: fresh.url, runnerToken: RUNNER_TOKEN, vars: { MAX_UPLOAD_BYTES: String(MiB) }, persistTo: join(dir, "r2") });
  user = await signInToEdge(edge.url, db);
  runner = startRunnerProcess({ LIBSQL_URL: fresh.url, EDGE_URL: edge.url, RUNNER_TOKEN, WORK_DIR: join(dir, "work"), ...FAST });
}, 120_000);
afterAll(async () => {
  await runner?.destroy();
  await edge?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Creates a job from one local file and waits for it to finish; returns the API view and the rows. */
async function runToEnd(file: string) {
  const job = await user.createJob([file], 2);
  const view = await until("the job to finish", async () => {
    const v = await user.getJob(job.id);
    return ["completed", "failed", "cancelled"].includes(v.status) && v;
  }, 60_000, 200);
  return { view, rows: await getVariationRows(db, job.id) };
}

async function jobCount(): Promise<number> {
  return Number((await db.$client.execute({ sql: "SELECT count(*) AS n FROM jobs WHERE user_id = ?", args: [user.userId] })).rows[0]!.n);
}

describe("files that pass the sniff but are not usable video", () => {
  it("fails a truncated MP4 (moov atom cut off) at once with a readable reason, no retries", async () => {
    const clip = await readFile(await makeClip({ seconds: 3 }));
    const file = join(dir, "truncated.mp4");
    await writeFile(file, clip.subarray(0, Math.floor(clip.length * 0.4)));
    const { view, rows } = await runToEnd(file);
    expect(view.status).toBe("failed");
    // One probe fails every variation of the source at once: no retries, at most one claim.
    expect(rows.every((r) => r.status === "failed" && r.claims <= 1)).toBe(true);
    expect(rows[0]!.error).toMatch(/^not a decodable video: .+/);
    expect(view.files[0].error ?? view.files[0].variations[0].error).toMatch(/not a decodable video/);
    expect(view.error).toMatch(/All 2 variations failed: not a decodable video/);
  });

  it("fails an MP4 whose moov survives but whose media data is cut, with a readable reason", async () => {
    const faststart = join(dir, "faststart.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-i", await makeClip({ seconds: 3 }), "-c", "copy", "-movflags", "+faststart", faststart]);
    const bytes = await readFile(faststart);
    const file = join(dir, "faststart-truncated.mp4");
    await writeFile(file, bytes.subarray(0, Math.floor(bytes.length * 0.5)));
    const { view, rows } = await runToEnd(file);
    expect(view.status).toBe("failed");
    expect(rows.every((r) => r.status === "failed" && r.claims <= 1)).toBe(true);
    // Whatever the stage that notices (probe, decode, or the output's duration check), the reason says what is wrong.
    expect(rows[0]!.error).toMatch(/decodable|incomplete|duration|Invalid data|truncat|ffmpeg exited/i);
    console.log(`[bad-input] half an MP4 with its moov first → ${rows[0]!.error}`);
  });

  it("fails an MP4 with no video stream (audio only) with 'no video stream'", async () => {
    const file = join(dir, "audio-only.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=2", "-c:a", "aac", "-f", "mp4", file]);
    const { view, rows } = await runToEnd(file);
    expect(view.status).toBe("failed");
    expect(rows.map((r) => r.error)).toEqual(["not a decodable video: no video stream", "not a decodable video: no video stream"]);
  });

  it("fails an ftyp header followed by noise, and an EBML header followed by noise, each with a readable reason", async () => {
    const mp4 = join(dir, "noise.mp4");
    await writeFile(mp4, Buffer.concat([Buffer.from([0, 0, 0, 0x18, ...Buffer.from("ftypisom"), 0, 0, 2, 0, ...Buffer.from("isomiso2")]), randomBytes(48 * 1024)]));
    const webm = join(dir, "noise.webm");
    await writeFile(webm, Buffer.concat([Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), randomBytes(48 * 1024)]));
    for (const file of [mp4, webm]) {
      const { view, rows } = await runToEnd(file);
      expect(view.status).toBe("failed");
      expect(rows.every((r) => r.status === "failed" && r.claims <= 1 && /^not a decodable video: .{3,}/.test(r.error ?? ""))).toBe(true);
    }
  });
});

describe("HTTP framing through wrangler dev", () => {
  /** A body of unknown length: Node's fetch sends it with Transfer-Encoding: chunked. */
  function chunked(parts: Uint8Array[]): ReadableStream<Uint8Array> {
    return new ReadableStream({
      pull(c) {
        const next = parts.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
  }

  it("takes a chunked upload part of the right size, and refuses a chunked part that runs long with 400 naming body", async () => {
    const size = 300 * 1024;
    const created = await (await user.call("/api/uploads", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ filename: "c.mp4", size }) })).json();
    const clip = (await readFile(await makeClip({ seconds: 3 }))).subarray(0, size);
    const long = await user.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: chunked([clip, randomBytes(4096)]), duplex: "half" } as RequestInit);
    const longBody = await long.json();
    expect([long.status, longBody.error?.field]).toEqual([400, "body"]);
    const ok = await user.call(`/api/uploads/${created.id}/parts/1`, { method: "PUT", body: chunked([clip.subarray(0, 1000), clip.subarray(1000)]), duplex: "half" } as RequestInit);
    // The body says why when it is not a 200 (seen once in CI: 503, reason not recorded).
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect((await user.call(`/api/uploads/${created.id}/complete`, { method: "POST" })).status).toBe(200);
  });

  it("answers a part sent to an unknown upload 404 without reading it, and the next request on the connection still works", async () => {
    const body = randomBytes(300 * 1024);
    // Before the app drained unread bodies, the request after such a 404 answered 503 every time (wrangler dev's
    // proxy reused the connection workerd had reset).
    for (let i = 0; i < 3; i++) {
      const lost = await user.call("/api/uploads/00000000000000000000/parts/1", { method: "PUT", body: chunked([body.subarray(0, 1000), body.subarray(1000)]), duplex: "half" } as RequestInit);
      expect(lost.status, await lost.clone().text()).toBe(404);
      const next = await user.call("/api/jobs", { method: "POST", body: new FormData() });
      expect([next.status, await next.clone().text()]).toEqual([400, expect.stringContaining('"invalid_request"')]);
    }
  });

  it("answers a GET that carries a body as it answers one without (no 500)", async () => {
    // fetch() cannot send a GET with a body; a raw client can, and workerd hands the worker that body.
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(`${edge.url}/api/health`, { method: "GET", headers: { "content-length": "5" } }, (res) => {
        let text = "";
        res.on("data", (d) => (text += d)).on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on("error", reject);
      req.end("hello");
    });
    expect([status, JSON.parse(text).db]).toEqual([200, "ok"]);
  });

  it("answers a 4xx, not a 5xx, to a 20 MB JSON login body and to a 20 MB bulk-cancel body", async () => {
    const junk = "x".repeat(20 * MiB);
    const login = await fetch(`${edge.url}/api/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: junk, password: junk }) });
    const bulk = await user.call("/api/jobs/cancel", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ids: [junk] }) });
    for (const res of [login, bulk]) {
      const text = await res.text();
      expect(res.status, text.slice(0, 200)).toBeGreaterThanOrEqual(400);
      expect(res.status, text.slice(0, 200)).toBeLessThan(500);
      expect(JSON.parse(text).error.code).toMatch(/^[a-z_]+$/);
    }
  });
  it("refuses a chunked multipart upload whose file exceeds MAX_UPLOAD_BYTES with 413 mid-stream, storing nothing", async () => {
    const boundary = "----vrchunked";
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="variations"\r\n\r\n2\r\n--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n`);
    const ftyp = Buffer.from([0, 0, 0, 0x18, ...Buffer.from("ftypisom"), 0, 0, 2, 0, ...Buffer.from("isomiso2")]);
    const parts = [head, ftyp, ...Array.from({ length: 6 }, () => randomBytes(256 * 1024)), Buffer.from(`\r\n--${boundary}--\r\n`)];
    const sourcesBefore = (await bucketObjects(edge.persistTo)).filter((o) => o.key.startsWith("sources/"));
    const jobsBefore = await jobCount();
    const t0 = Date.now();
    const res = await user.call("/api/jobs", {
      method: "POST",
      body: chunked(parts),
      headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      duplex: "half",
      signal: AbortSignal.timeout(30_000),
    } as RequestInit);
    const reply = await res.json();
    expect([res.status, reply.error.code]).toEqual([413, "too_large"]);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // What the refused request had already written to R2 is gone again, and no job row exists.
    await until("the partial source to be deleted", async () =>
      JSON.stringify((await bucketObjects(edge.persistTo)).filter((o) => o.key.startsWith("sources/"))) === JSON.stringify(sourcesBefore), 10_000, 100);
    expect(await jobCount()).toBe(jobsBefore);
    // The refused body was read to its end before the answer, so the connection stays usable: no 503 next.
    const next = await user.call("/api/jobs", { method: "POST", body: new FormData() });
    expect([next.status, (await next.json()).error?.code]).toEqual([400, "invalid_request"]);
  });
});
