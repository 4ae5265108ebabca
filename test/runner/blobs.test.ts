import { getEventListeners } from "node:events";
import { mkdtemp, readFile, rm, writeFile, type FileHandle } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BlobClient, BlobError, UPLOAD_TRIES } from "../../runner/blobs";

/** How many writes of the files the runner opens are cut short (half their bytes taken), as on a disk filling up. */
const disk = vi.hoisted(() => ({ shortWrites: 0 }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs/promises")>();
  const open = async (...args: Parameters<typeof fs.open>) => shortOnDemand(await fs.open(...args));
  return { ...fs, open };
});

function shortOnDemand(fh: FileHandle): FileHandle {
  const write = fh.write.bind(fh) as (data: Uint8Array, offset?: number, length?: number) => Promise<{ bytesWritten: number }>;
  Object.assign(fh, {
    write: (data: Uint8Array, offset = 0, length = data.byteLength - offset) =>
      write(data, offset, disk.shortWrites-- > 0 ? Math.ceil(length / 2) : length),
  });
  return fh;
}

/** What the stand-in edge serves to any GET: a stored object's bytes. */
const OBJECT = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 13) & 0xff));

/** A stand-in for the edge's object endpoint: each PUT is answered by the next scripted verdict. */
let server: Server;
let url: string;
let dir: string;
let script: ("reset" | "stall" | "digest" | 200 | 403 | 503)[] = [];
const received: { bytes: number; verdict: string; call: string; text?: string; sha256?: string }[] = [];

/** What the edge answers a successful call: a multipart create its upload id, a part its number and etag. */
function answerOf(req: IncomingMessage): string {
  if (req.method === "POST" && /\/internal\/uploads$/.test(req.url ?? "")) return '{"uploadId":"up1"}';
  const part = /\/parts\/(\d+)/.exec(req.url ?? "");
  return part ? JSON.stringify({ partNumber: Number(part[1]), etag: `e${part[1]}` }) : "{}";
}

/** "create", "part 2", "complete", "abort" or "put": which call of an upload a request is. */
function callOf(req: IncomingMessage): string {
  const u = req.url ?? "";
  if (req.method === "POST" && /\/internal\/uploads$/.test(u)) return "create";
  const part = /\/parts\/(\d+)/.exec(u);
  if (part) return `part ${part[1]}`;
  if (/\/complete/.test(u)) return "complete";
  return req.method === "DELETE" ? "abort" : "put";
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-blobs-test-"));
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const verdict = script.shift() ?? 200;
    let bytes = 0;
    // Once per request: a small body cut by a reset may still see its end before the close.
    let logged = false;
    // The body of a complete (small JSON): what the edge needs to recognise a retry of one that landed.
    let text = "";
    const log = () => {
      const sha256 = req.headers["x-content-sha256"] as string | undefined;
      if (!logged) received.push({ bytes, verdict: String(verdict), call: callOf(req), ...(callOf(req) === "complete" ? { text } : {}), ...(sha256 ? { sha256 } : {}) });
      logged = true;
    };
    req.on("data", (c: Buffer) => {
      bytes += c.length;
      if (callOf(req) === "complete") text += c.toString("utf8");
      // A connection that breaks mid-body, as when the edge restarts under an upload.
      if (verdict === "reset" && bytes > 0) req.socket.destroy();
    });
    req.on("end", () => {
      log();
      if (verdict === "reset") return;
      // Headers and half an answer, then nothing: an edge wedged mid-reply.
      if (verdict === "stall") return void res.writeHead(200, { "content-type": "application/json" }).write('{"part');
      // What the edge answers when R2 refused the body for another SHA-256 than the one sent.
      if (verdict === "digest") return void res.writeHead(400, { "content-type": "application/json" }).end('{"error":{"code":"digest_mismatch","message":"other bytes"}}');
      if (req.method === "GET" && verdict === 200) return void res.writeHead(200, { "content-length": String(OBJECT.length) }).end(OBJECT);
      res.writeHead(verdict, { "content-type": "application/json" }).end(verdict === 200 ? answerOf(req) : '{"error":{"code":"x","message":"refused"}}');
    });
    req.on("close", () => verdict === "reset" && log());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

async function file(bytes: number): Promise<string> {
  const f = join(dir, `f-${bytes}-${Math.random()}`);
  await writeFile(f, Buffer.alloc(bytes, 7));
  return f;
}

describe("BlobClient uploads", () => {
  it("sends a multipart create and complete again after a blip, like the parts, so a large output is not thrown away", async () => {
    script = [503, 200, 200, 200, "reset", 503, 200];
    received.length = 0;
    const blobs = new BlobClient({ edgeUrl: url, token: "t", singlePutMaxBytes: 100 * 1024, partBytes: 100 * 1024 });
    const f = await file(150 * 1024);
    await expect(blobs.upload("outputs/j/v.a1.mp4", f)).resolves.toEqual({ size: 150 * 1024 });
    expect(received.map((r) => `${r.call} ${r.verdict}`)).toEqual([
      "create 503",
      "create 200",
      "part 1 200",
      "part 2 200",
      "complete reset",
      "complete 503",
      "complete 200",
    ]);
    // Every complete names the object's length, so a retry of one that landed (its answer lost) is answered 200.
    expect(JSON.parse(received.at(-1)!.text!)).toEqual({ parts: [{ partNumber: 1, etag: "e1" }, { partNumber: 2, etag: "e2" }], size: 150 * 1024 });
  });

  it("sends the output's SHA-256 with a single PUT, and the body again when the edge received other bytes", async () => {
    script = ["digest", 200];
    received.length = 0;
    const blobs = new BlobClient({ edgeUrl: url, token: "t" });
    const f = await file(4096);
    await expect(blobs.upload("outputs/j/v.a1.mp4", f, undefined, undefined, "c".repeat(64))).resolves.toEqual({ size: 4096 });
    expect(received.map((r) => [r.verdict, r.sha256])).toEqual([
      ["digest", "c".repeat(64)],
      ["200", "c".repeat(64)],
    ]);
    // Every try refused: given up as a transient trouble, carrying the code the runner tells apart from an outage.
    script = Array(UPLOAD_TRIES).fill("digest");
    await expect(blobs.upload("outputs/j/v.a1.mp4", f, undefined, undefined, "c".repeat(64))).rejects.toMatchObject({
      status: 400,
      transient: true,
      code: "digest_mismatch",
    });
    script = [];
  });

  it("sends an upload again when the connection breaks mid-body, so a finished encode is not thrown away for a blip", async () => {
    script = ["reset", 503, 200];
    received.length = 0;
    const blobs = new BlobClient({ edgeUrl: url, token: "t" });
    const f = await file(256 * 1024);
    await expect(blobs.upload("outputs/j/v.a1.mp4", f)).resolves.toEqual({ size: 256 * 1024 });
    expect(received.map((r) => r.verdict)).toEqual(["reset", "503", "200"]);
    expect(received.at(-1)!.bytes).toBe(256 * 1024);
  });

  it("sends an output as slowly as the uplink takes it: the wait counts from the last chunk sent, not from the start", async () => {
    // An uplink that takes a 1 MiB chunk every 2.2 s (~0.45 MiB/s): the 6 MiB output needs 15 s; the edge answers
    // when the last byte is in. Before, the whole PUT had stallMs + 1 s per MiB (here 5 + 6 = 11 s) and every try
    // timed out, so large outputs never went up on a slow link. Each gap (2.2 s) is well inside stallMs (5 s).
    const sent: number[] = [];
    const slowLink = vi.fn(async (_url: string | URL | Request, init?: RequestInit) => {
      const reader = (init!.body as ReadableStream<Uint8Array>).getReader();
      for (;;) {
        await new Promise((r) => setTimeout(r, 2200));
        // As fetch does: the client's timeout aborts the request.
        if (init!.signal!.aborted) throw new DOMException("This operation was aborted", "AbortError");
        const { done, value } = await reader.read();
        if (done) break;
        sent.push(value.length);
      }
      return new Response("{}", { status: 200, headers: { "content-type": "application/json" } });
    });
    vi.stubGlobal("fetch", slowLink);
    try {
      const blobs = new BlobClient({ edgeUrl: url, token: "t", stallMs: 5000 });
      const f = await file(6 * 1024 * 1024);
      await expect(blobs.upload("outputs/j/v.a1.mp4", f)).resolves.toEqual({ size: 6 * 1024 * 1024 });
      expect(slowLink).toHaveBeenCalledTimes(1);
      expect(sent.reduce((a, b) => a + b, 0)).toBe(6 * 1024 * 1024);
    } finally {
      vi.unstubAllGlobals();
    }
  }, 60_000);

  it("still gives up on an edge that takes no byte of the body for stallMs", async () => {
    const wedged = vi.fn(async (_url: string | URL | Request, init?: RequestInit) => {
      // Never reads the body and never answers, until the client gives up.
      await new Promise((_, reject) => init!.signal!.addEventListener("abort", () => reject(new Error("aborted")), { once: true }));
      return new Response(null);
    });
    vi.stubGlobal("fetch", wedged);
    try {
      const blobs = new BlobClient({ edgeUrl: url, token: "t", stallMs: 300 });
      const f = await file(1024);
      const err = await blobs.upload("outputs/j/v.a1.mp4", f).catch((e: unknown) => e);
      expect(err).toMatchObject({ transient: true, message: expect.stringMatching(/no progress from the edge within 300 ms/) });
      expect(wedged).toHaveBeenCalledTimes(UPLOAD_TRIES);
    } finally {
      vi.unstubAllGlobals();
    }
  }, 30_000);

  it("gives up after UPLOAD_TRIES on an edge that stays down, and never retries a refusal (403: the lease is gone)", async () => {
    script = Array(UPLOAD_TRIES + 2).fill(503);
    received.length = 0;
    const blobs = new BlobClient({ edgeUrl: url, token: "t" });
    const f = await file(1024);
    await expect(blobs.upload("outputs/j/v.a1.mp4", f)).rejects.toMatchObject({ status: 503, transient: true });
    expect(received).toHaveLength(UPLOAD_TRIES);

    script = [403, 200];
    received.length = 0;
    const refused = await blobs.upload("outputs/j/v.a1.mp4", f).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BlobError);
    expect((refused as BlobError).status).toBe(403);
    expect(received).toHaveLength(1);
    script = [];
  });

  it("gives up on an answer that stalls after its headers as soon as the caller stops (a cancel or a shutdown)", async () => {
    script = ["stall"];
    // Multipart: the create's answer (the upload id) is read as JSON, and that answer stalls.
    const blobs = new BlobClient({ edgeUrl: url, token: "t", singlePutMaxBytes: 512 });
    const stop = new AbortController();
    const f = await file(1024);
    const upload = blobs.upload("outputs/j/v.a1.mp4", f, stop.signal);
    await new Promise((r) => setTimeout(r, 200));
    stop.abort(new Error("cancelled"));
    const settled = await Promise.race([upload.then(() => "resolved", () => "rejected"), new Promise((r) => setTimeout(() => r("still waiting"), 5000))]);
    expect(settled).toBe("rejected");
    script = [];
  });

  it("leaves no listener on a long-lived caller signal after each upload (the runner's thumbnails share one)", async () => {
    script = [];
    const blobs = new BlobClient({ edgeUrl: url, token: "t" });
    const lifetime = new AbortController();
    const f = await file(1024);
    for (let i = 0; i < 15; i++) await blobs.upload(`thumbs/j${i}.jpg`, f, lifetime.signal);
    expect(getEventListeners(lifetime.signal, "abort")).toHaveLength(0);
  });
});

describe("BlobClient downloads", () => {
  it("stores every byte of a chunk whose write the disk took only in part", async () => {
    const dest = join(dir, `download-${Math.random()}`);
    disk.shortWrites = 1;
    const size = await new BlobClient({ edgeUrl: url, token: "t" }).download("sources/j/s", dest).finally(() => (disk.shortWrites = 0));
    expect(size).toBe(OBJECT.length);
    expect(Buffer.compare(await readFile(dest), OBJECT)).toBe(0);
  });
});

describe("BlobClient.edgeClock", () => {
  it("reads the edge's clock and keeps whether the edge takes the runner's token: refused on 401, taken on an answer, taken on an older edge's 404", async () => {
    const answers: [number, string][] = [
      [401, '{"error":{"code":"runner_unauthorized","message":"no"}}'],
      [200, '{"now":1234567}'],
      [401, '{"error":{"code":"runner_unauthorized","message":"no"}}'],
      [404, '{"error":{"code":"not_found","message":"Not found"}}'],
    ];
    const edge = createServer((req, res) => {
      const [status, body] = answers.shift()!;
      req.resume();
      res.writeHead(status, { "content-type": "application/json" }).end(body);
    });
    await new Promise<void>((r) => edge.listen(0, "127.0.0.1", r));
    try {
      const blobs = new BlobClient({ edgeUrl: `http://127.0.0.1:${(edge.address() as AddressInfo).port}`, token: "t" });
      await expect(blobs.edgeClock()).rejects.toMatchObject({ status: 401 });
      expect(blobs.tokenRefused).toBe(true);
      await expect(blobs.edgeClock()).resolves.toBe(1234567);
      expect(blobs.tokenRefused).toBe(false);
      await expect(blobs.edgeClock()).rejects.toMatchObject({ status: 401 });
      expect(blobs.tokenRefused).toBe(true);
      await expect(blobs.edgeClock()).rejects.toMatchObject({ status: 404 });
      expect(blobs.tokenRefused).toBe(false);
    } finally {
      edge.closeAllConnections();
      await new Promise((r) => edge.close(r));
    }
  });
});
