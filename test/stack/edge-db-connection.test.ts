// Dropped connections on the real stack (wrangler dev): the edge's pooled connection to the database, and the
// connection wrangler's proxy keeps to the worker after the worker refused an upload part-way.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamedVideoForm } from "../helpers/forms";
import { signInToEdge, type ApiSession } from "../helpers/api";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";
import { freshDb } from "../helpers/seed";
import { startWranglerDev, type WranglerDev } from "../helpers/wrangler";
import { startFaultProxy, type FaultProxy } from "../faults/proxy";
import { startDbProxy, type DbProxy } from "../helpers/db-proxy";

let server: TestLibsqlServer;
let proxy: FaultProxy;
/** Behind `proxy`: drops the replies of requests whose SQL matches, after the server committed them. */
let dbProxy: DbProxy;
/** `skip` matching requests pass first, then the replies of `left` are dropped. */
let dropReplies: { match: RegExp; skip: number; left: number } | null = null;
let edge: WranglerDev;
let dir: string;
let user: ApiSession;
/** Pipeline requests (edge → database) still to cut before they reach the server. */
let cutNext = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-edge-db-connection-"));
  server = await startTestLibsql();
  const fresh = await freshDb(server, "edge_db_connection");
  // The edge reaches the database only through the proxy; the test seeds it directly.
  dbProxy = await startDbProxy(server.url, (body) => {
    // The SQL is a JSON string in the body: its line breaks are `\n`.
    if (!dropReplies || dropReplies.left === 0 || !dropReplies.match.test(body.replace(/\\[nt]/g, " "))) return "pass";
    if (dropReplies.skip > 0) return dropReplies.skip--, "pass";
    dropReplies.left--;
    return "drop-reply";
  });
  proxy = await startFaultProxy();
  proxy.setTarget(dbProxy.url);
  proxy.setRule((req) => (cutNext > 0 && /\/v[23]\/pipeline$/.test(req.url ?? "") && cutNext-- > 0 ? { cutAfterBytes: 0 } : "pass"));
  const libsqlUrl = new URL(new URL(fresh.url).pathname, proxy.url).href;
  edge = await startWranglerDev({ libsqlUrl, runnerToken: "edge-db-connection-runner-token-0123", persistTo: join(dir, "r2") });
  user = await signInToEdge(edge.url, fresh.db);
}, 120_000);
afterAll(async () => {
  await edge?.close();
  await proxy?.close();
  await dbProxy?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function mp4(bytes: number): Blob {
  const b = new Uint8Array(bytes);
  b.set([0, 0, 0, 0x18, ...Buffer.from("ftypisom"), 0, 0, 2, 0, ...Buffer.from("isomiso2")], 0);
  return new Blob([b], { type: "video/mp4" });
}

async function postForm(files: number, bytes: number): Promise<{ status: number; code: string }> {
  const form = new FormData();
  form.append("variations", "1");
  for (let i = 0; i < files; i++) form.append("videos", mp4(bytes), `clip-${i}.mp4`);
  const res = await user.call("/api/jobs", { method: "POST", body: form });
  const text = await res.text();
  return { status: res.status, code: text.startsWith("{") ? JSON.parse(text).error?.code : text.slice(0, 80) };
}

describe("POST /api/jobs refused part-way through its body", () => {
  for (const bytes of [100 * 1024, 2 * 1024 * 1024]) {
    it(`answers 11 videos of ${bytes / 1024} KiB with 400, then an upload with no video with 400, twice over`, async () => {
      const replies = [];
      for (let round = 0; round < 2; round++) replies.push(await postForm(11, bytes), await postForm(0, 0));
      const bad = { status: 400, code: "invalid_request" };
      expect(replies).toEqual([bad, bad, bad, bad]);
    });
  }
});

describe("the edge's connection to the database", () => {
  it("answers a request whose database read lost its connection with 200, not 503 db_unavailable", async () => {
    const before = proxy.events.length;
    cutNext = 1;
    const res = await user.call("/api/jobs");
    const text = await res.text();
    expect({ status: res.status, text: text.slice(0, 120) }).toMatchObject({ status: 200 });
    const seen = proxy.events.slice(before).map((e) => e.verdict);
    expect(seen.slice(0, 2)).toEqual(["cut", "pass"]);
  });

  it("answers 503 db_unavailable when the read's retry loses its connection too", async () => {
    cutNext = 2;
    const res = await user.call("/api/jobs");
    expect([res.status, (await res.json()).error.code]).toEqual([503, "db_unavailable"]);
    expect(cutNext).toBe(0);
  });
});

describe("a long form upload while the database drops replies", () => {
  it("creates the job when the upload's progress write loses its reply twice over, instead of throwing away what it stored", async () => {
    // 40 MiB with a declared length: the edge records the upload's progress every 16 MiB stored. The first such
    // write loses its reply, and so does its one replay: the database is unreachable for that moment. Before, the
    // first lost reply answered 503 db_unavailable and deleted everything stored so far.
    const droppedBefore = dbProxy.dropped.length;
    dropReplies = { match: /update\W+ingests\W+set\W+touched_at/i, skip: 0, left: 2 };
    try {
      const res = await user.call("/api/jobs", { method: "POST", ...streamedVideoForm(40) } as RequestInit);
      const text = await res.text();
      expect({ status: res.status, text: text.slice(0, 200) }).toMatchObject({ status: 202 });
      expect(dbProxy.dropped.length - droppedBefore).toBe(2);
      const read = await user.call(`/api/jobs/${JSON.parse(text).id}`);
      expect([read.status, (await read.json()).totalVariations]).toEqual([200, 1]);
    } finally {
      dropReplies = null;
    }
  });

  it("creates the job from an upload of undeclared length whose request for more room loses its reply", async () => {
    // Sent chunked, the upload holds room in steps of 16 MiB. Its second request (the first is made with the first
    // bytes) loses its reply: before, it was made only once the room had run out, and the lost reply ended the
    // upload with 503 and deleted what it had stored; now it is made ahead of need and tried again later.
    const droppedBefore = dbProxy.dropped.length;
    dropReplies = { match: /update\W+ingests\W+set\W.*reserved_bytes\W+=\s*min\(/i, skip: 1, left: 1 };
    try {
      const res = await user.call("/api/jobs", { method: "POST", ...streamedVideoForm(40, { declareLength: false }) } as RequestInit);
      const text = await res.text();
      expect({ status: res.status, text: text.slice(0, 200) }).toMatchObject({ status: 202 });
      expect(dbProxy.dropped.length - droppedBefore).toBe(1);
    } finally {
      dropReplies = null;
    }
  });
});
