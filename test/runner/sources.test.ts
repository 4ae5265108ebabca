import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, readFile, stat, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { BlobClient } from "../../runner/blobs";
import { createLogger } from "../../runner/log";
import { SourceCache } from "../../runner/sources";
import { samplesFile } from "../../runner/samples";
import { filesUnder } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { makeClip } from "../helpers/clips";
import { tempDirs } from "../helpers/tmp";

const TOKEN = "fake-edge-token-0123456789";
/** The ticket of attempt 1 of `variationId` on runner r1. */
const ticketOf = (variationId: string) => ({ runnerId: "r1", variationId, attempt: 1 });

interface FakeEdge {
  url: string;
  /** `ticket` is `<runner>/<variation>/<attempt>` from the ticket headers. */
  requests: { key: string; range: string | undefined; ticket: string | undefined }[];
  /** Requests whose client went away before the body was complete. */
  aborted: number;
  close(): Promise<void>;
}

/**
 * Only the runner's blob endpoint for downloads, with knobs the real edge does not have: a slow drip and a
 * connection cut mid-body. The edge itself is tested elsewhere; here the subject is the runner's side.
 */
async function fakeEdge(
  objects: Record<string, Buffer>,
  opts: {
    dripMs?: number;
    cutFirstAfter?: number;
    /** The first response sends 64 KiB, then is cut when this settles. */
    cutFirstWhen?: Promise<void>;
    stallAfter?: number;
    hangPuts?: boolean;
    /** Variation ids whose tickets the edge refuses (403), as the real edge does once a lease is gone. */
    refused?: Set<string>;
  } = {},
): Promise<FakeEdge> {
  const state: FakeEdge = { url: "", requests: [], aborted: 0, close: async () => {} };
  let cut = opts.cutFirstAfter;
  let cutWhen = opts.cutFirstWhen;
  const server: Server = createServer((req, res) => {
    const key = decodeURIComponent((req.url ?? "").replace(/^\/internal\/objects\//, ""));
    // A wedged edge: reads the whole upload, never answers.
    if (req.method === "PUT" && opts.hangPuts) return void req.resume();
    const [runner, variation, attempt] = ["x-runner-id", "x-variation-id", "x-variation-attempt"].map((h) => req.headers[h] as string | undefined);
    const ticket = runner && variation && attempt ? `${runner}/${variation}/${attempt}` : undefined;
    state.requests.push({ key, range: req.headers.range, ticket });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
    // The real edge serves an object only for the variation attempt a runner holds.
    if (!ticket || opts.refused?.has(variation!)) {
      return void res.writeHead(403, { "content-type": "application/json" }).end('{"error":{"code":"not_your_work","message":"no"}}');
    }
    const body = objects[key];
    if (!body) return void res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"code":"not_found","message":"no"}}');
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (m) start = Number(m[1]);
    const slice = body.subarray(start);
    res.writeHead(m ? 206 : 200, {
      "content-length": String(slice.length),
      ...(m ? { "content-range": `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    let finished = false;
    res.on("close", () => {
      if (!finished) state.aborted++;
    });
    if (opts.stallAfter !== undefined) {
      // Headers and some bytes, then silence with the connection left open.
      res.write(slice.subarray(0, opts.stallAfter));
      return;
    }
    if (cutWhen !== undefined) {
      const when = cutWhen;
      cutWhen = undefined;
      res.write(slice.subarray(0, 64 * 1024), () => void when.then(() => res.destroy()));
      return;
    }
    if (cut !== undefined) {
      const n = cut;
      cut = undefined;
      res.write(slice.subarray(0, n), () => res.destroy());
      return;
    }
    if (!opts.dripMs) {
      finished = true;
      return void res.end(slice);
    }
    let offset = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      const chunk = slice.subarray(offset, offset + 4096);
      offset += chunk.length;
      if (offset >= slice.length) {
        clearInterval(timer);
        finished = true;
        res.end(chunk);
      } else res.write(chunk);
    }, opts.dripMs);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}

const tmp = tempDirs("vr-sources-test");
afterAll(() => tmp.cleanup());
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function setup(objects: Record<string, Buffer>, opts: Parameters<typeof fakeEdge>[1] = {}, maxBytes?: number, stallMs?: number) {
  const edge = await fakeEdge(objects, opts);
  closers.push(() => edge.close());
  const workDir = await tmp.make();
  const blobs = new BlobClient({ edgeUrl: edge.url, token: TOKEN, stallMs });
  const cache = new SourceCache({ workDir, blobs, ffmpeg: "ffmpeg", ffprobe: "ffprobe", log: createLogger({ sink: () => {} }), maxBytes });
  return { edge, workDir, blobs, cache };
}

describe("source cache", () => {
  it("downloads a source once and shares it between variations that need it at the same time", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    const { edge, cache } = await setup({ "sources/j1/s1": clip });
    const ref = { sourceId: "s1", jobId: "j1", key: "sources/j1/s1" };
    const [a, b] = await Promise.all([
      cache.acquire({ ...ref, ticket: ticketOf("va") }, new AbortController().signal),
      cache.acquire({ ...ref, ticket: ticketOf("vb") }, new AbortController().signal),
    ]);
    expect(edge.requests).toHaveLength(1);
    // The download shows the edge the ticket of the variation that started it.
    expect(edge.requests[0]!.ticket).toBe("r1/va/1");
    expect(a.path).toBe(b.path);
    expect([a.fresh, b.fresh].sort()).toEqual([false, true]);
    expect(a.media).toMatchObject({ width: 320, height: 240, hasAudio: true });
    a.release();
    b.release();
    // Later variations of the same source reuse the file too.
    const c = await cache.acquire({ ...ref, ticket: ticketOf("vc") }, new AbortController().signal);
    expect(edge.requests).toHaveLength(1);
    expect(c.fresh).toBe(false);
    c.release();
  });

  it("counts a source's sample file against the cache's budget and removes it with the source", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    // Room for both sources, but not for a source with its (large) sample file.
    const { cache } = await setup({ "sources/j1/s1": clip, "sources/j2/s2": clip }, {}, clip.length * 2 + 1000);
    const first = await cache.acquire({ sourceId: "s1", jobId: "j1", key: "sources/j1/s1", ticket: ticketOf("va") }, new AbortController().signal);
    const samples = samplesFile(first.path);
    await writeFile(samples, Buffer.alloc(clip.length, 1));
    first.release();
    const second = await cache.acquire({ sourceId: "s2", jobId: "j2", key: "sources/j2/s2", ticket: ticketOf("vb") }, new AbortController().signal);
    second.release();
    await until("the first source to be evicted", async () => !(await stat(first.path).then(() => true, () => false)), 5000, 20);
    expect(await stat(samples).then(() => true, () => false)).toBe(false);
    expect((await stat(second.path)).size).toBe(clip.length);
  });

  it("aborts a download in flight when the only variation waiting for it is stopped, and removes the partial file", async () => {
    const { edge, cache, workDir } = await setup({ "sources/j2/s2": Buffer.alloc(4 * 1024 * 1024, 1) }, { dripMs: 20 });
    const stop = new AbortController();
    const pending = cache.acquire({ sourceId: "s2", jobId: "j2", key: "sources/j2/s2", ticket: ticketOf("v2") }, stop.signal);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    stop.abort();
    await expect(pending).rejects.toThrow();
    // The drip takes ~20 s for the whole source: seconds, not the rest of the download, is what "aborted" means.
    expect(performance.now() - t0).toBeLessThan(5000);
    await until("the edge to see the download aborted", async () => edge.aborted === 1, 10_000, 20);
    await until("the partial file to be removed", async () => (await filesUnder(workDir)).length === 0, 10_000, 20);
    expect(edge.aborted).toBe(1);
  });

  it("keeps a shared download going while another variation still waits for it", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    const { edge, cache } = await setup({ "sources/j3/s3": clip }, { dripMs: 2 });
    const ref = { sourceId: "s3", jobId: "j3", key: "sources/j3/s3" };
    const stopped = new AbortController();
    const first = cache.acquire({ ...ref, ticket: ticketOf("v3a") }, stopped.signal);
    const second = cache.acquire({ ...ref, ticket: ticketOf("v3b") }, new AbortController().signal);
    stopped.abort();
    await expect(first).rejects.toThrow();
    const got = await second;
    expect(got.media.width).toBe(320);
    expect(edge.aborted).toBe(0);
    got.release();
  });

  it("resumes a shared download with the ticket of a variation still waiting once the one that started it was stopped", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    const refused = new Set<string>();
    let cutNow!: () => void;
    const cutFirstWhen = new Promise<void>((r) => (cutNow = r));
    const { edge, cache } = await setup({ "sources/j4/s4": clip }, { cutFirstWhen, refused });
    const ref = { sourceId: "s4", jobId: "j4", key: "sources/j4/s4" };
    const stopped = new AbortController();
    const first = cache.acquire({ ...ref, ticket: ticketOf("v4a") }, stopped.signal);
    const second = cache.acquire({ ...ref, ticket: ticketOf("v4b") }, new AbortController().signal);
    while (edge.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
    stopped.abort();
    await expect(first).rejects.toThrow();
    // v4a's lease is gone: the edge refuses its ticket from now on, so the resume after the cut must not show it.
    refused.add("v4a");
    cutNow();
    const got = await second;
    expect(got.media.width).toBe(320);
    expect(edge.requests.map((r) => [r.ticket, r.range === undefined ? "whole" : "rest"])).toEqual([
      ["r1/v4a/1", "whole"],
      ["r1/v4b/1", "rest"],
    ]);
    got.release();
  });

  it("evicts sources nobody uses once the byte budget is exceeded, least recently used first", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    const { cache, workDir } = await setup({ "sources/j/a": clip, "sources/j/b": clip }, {}, clip.length + 10);
    const a = await cache.acquire({ sourceId: "a", jobId: "j", key: "sources/j/a", ticket: ticketOf("va") }, new AbortController().signal);
    a.release();
    const b = await cache.acquire({ sourceId: "b", jobId: "j", key: "sources/j/b", ticket: ticketOf("vb") }, new AbortController().signal);
    b.release();
    // Eviction runs in the background after the release.
    await until("a to be evicted", async () => (await filesUnder(workDir)).length === 1, 10_000, 20);
    expect((await filesUnder(workDir)).sort()).toEqual(["j/src-b"]);
  });

  it("gives back every source nobody uses in one step, keeps the ones in use, and counts the bytes it gave back", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    const { cache, workDir } = await setup({ "sources/j/a": clip, "sources/j/b": clip });
    const a = await cache.acquire({ sourceId: "a", jobId: "j", key: "sources/j/a", ticket: ticketOf("va") }, new AbortController().signal);
    const b = await cache.acquire({ sourceId: "b", jobId: "j", key: "sources/j/b", ticket: ticketOf("vb") }, new AbortController().signal);
    a.release();
    expect(cache.freedBytes).toBe(0);
    const { dropped, removed } = cache.dropIdle();
    // Counted at once, before the files are gone: a full disk's outcome decides on it without awaiting.
    expect({ dropped, freed: cache.freedBytes }).toEqual({ dropped: 1, freed: clip.length });
    await removed;
    expect(await filesUnder(workDir)).toEqual(["j/src-b"]);
    expect(cache.dropIdle().dropped).toBe(0);
    expect(cache.freedBytes).toBe(clip.length);
    b.release();
  });
});

describe("source cache eviction against new claims", () => {
  it("never deletes a source a task acquired while an eviction pass was busy removing another one", async () => {
    const clip = await readFile(await makeClip({ seconds: 2 }));
    const objects = { "sources/j/a": clip, "sources/j/b": clip, "sources/j/c": clip };
    // Room for one source: with c in use, a and b (both idle) are over the budget and both due for eviction.
    const { cache } = await setup(objects, {}, clip.length + 10);
    const signal = new AbortController().signal;
    const get = (id: string) => cache.acquire({ sourceId: id, jobId: "j", key: `sources/j/${id}`, ticket: ticketOf(`v${id}`) }, signal);
    const [a, b] = [await get("a"), await get("b")];
    // The pass's removal of a is held (a slow disk) until b has been handed to a new task.
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    const drop = (cache as unknown as { drop: (e: { path: string }) => Promise<boolean> }).drop.bind(cache);
    let removingA!: () => void;
    const aBeingRemoved = new Promise<void>((r) => (removingA = r));
    (cache as unknown as { drop: typeof drop }).drop = async (e) => {
      if (e.path === a.path) {
        removingA();
        await held;
      }
      return drop(e);
    };
    const c = await get("c");
    a.release();
    b.release();
    await aBeingRemoved;
    const bAgain = await get("b");
    letGo();
    await until("a to be evicted", async () => !(await stat(a.path).then(() => true, () => false)), 5000, 20);
    // Once the pass is over, the file b's new task holds is still there, whole.
    await (cache as unknown as { evicting: Promise<void> | null }).evicting;
    expect((await stat(bAgain.path)).size).toBe(clip.length);
    bAgain.release();
    c.release();
  });
});

describe("blob client downloads", () => {
  it("resumes a download cut off mid-way with a Range request instead of starting over", async () => {
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff));
    const { edge, blobs } = await setup({ "sources/j/s": data }, { cutFirstAfter: 100_000 });
    const dest = join(await tmp.make(), "file");
    expect(await blobs.download("sources/j/s", dest, undefined, ticketOf("v"))).toBe(data.length);
    expect(edge.requests.map((r) => r.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    expect(edge.requests.map((r) => r.ticket)).toEqual(["r1/v/1", "r1/v/1"]);
    expect(Number(/bytes=(\d+)-/.exec(edge.requests[1]!.range!)![1])).toBeGreaterThan(0);
    expect((await stat(dest)).size).toBe(data.length);
    expect(Buffer.compare(await readFile(dest), data)).toBe(0);
  });

  it("does not retry a missing object", async () => {
    const { edge, blobs } = await setup({});
    const dest = join(await tmp.make(), "file");
    await expect(blobs.download("sources/j/none", dest, undefined, ticketOf("v"))).rejects.toMatchObject({ status: 404, transient: false });
    expect(edge.requests).toHaveLength(1);
  });

  it("does not retry a download the edge refuses as not this runner's work", async () => {
    const { edge, blobs } = await setup({ "sources/j/s": Buffer.alloc(1000, 1) }, { refused: new Set(["gone"]) });
    const dest = join(await tmp.make(), "file");
    await expect(blobs.download("sources/j/s", dest, undefined, ticketOf("gone"))).rejects.toMatchObject({ status: 403, transient: false });
    await expect(blobs.download("sources/j/s", dest)).rejects.toMatchObject({ status: 403, transient: false });
    expect(edge.requests.map((r) => r.ticket)).toEqual(["r1/gone/1", undefined]);
  });

  it("gives up on a download whose body stalls, as a transient failure, instead of waiting forever", async () => {
    const data = Buffer.alloc(200_000, 5);
    const { edge, blobs } = await setup({ "sources/j/slow": data }, { stallAfter: 1000 }, undefined, 300);
    const dest = join(await tmp.make(), "file");
    const t0 = performance.now();
    await expect(blobs.download("sources/j/slow", dest, undefined, ticketOf("v"))).rejects.toMatchObject({ transient: true, message: expect.stringMatching(/stalled for 300 ms/) });
    expect(performance.now() - t0).toBeLessThan(10_000);
    // Each retry asked only for what was missing.
    expect(edge.requests.slice(1).every((r) => /^bytes=\d+-$/.test(r.range ?? ""))).toBe(true);
  });
});

describe.skipIf(process.getuid?.() !== 0)("blob client downloads: a disk that fills during the last chunk", () => {
  it("rejects the download as the runner's full disk and caches no source, rather than keep a truncated file as the video", async () => {
    // A tmpfs of the test's own (root: mount), so its free space moves only with what this download writes.
    const disk = await tmp.make();
    await promisify(execFile)("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", disk]);
    closers.push(() => promisify(execFile)("umount", [disk]).then(() => {}));
    const workDir = join(disk, "work");
    await mkdir(workDir);
    // A few bytes past the free space: the write of the last chunk is the one the kernel cuts short, without an error.
    const { bavail, bsize } = await statfs(disk);
    const data = Buffer.alloc(bavail * bsize + 100, 9);
    const edge = await fakeEdge({ "sources/j/s": data });
    closers.push(() => edge.close());
    const blobs = new BlobClient({ edgeUrl: edge.url, token: TOKEN });
    const cache = new SourceCache({ workDir, blobs, ffmpeg: "ffmpeg", ffprobe: "ffprobe", log: createLogger({ sink: () => {} }) });
    const ref = { sourceId: "s", jobId: "j", key: "sources/j/s", ticket: ticketOf("v") };
    await expect(cache.acquire(ref, new AbortController().signal)).rejects.toMatchObject({ code: "ENOSPC" });
    expect(await filesUnder(workDir)).toEqual([]);
  });
});

describe("blob client uploads", () => {
  it("abandons an upload the edge never answers, as a transient failure", async () => {
    const { blobs } = await setup({}, { hangPuts: true }, undefined, 300);
    const file = join(await tmp.make(), "out.mp4");
    await writeFile(file, Buffer.alloc(10_000, 1));
    await expect(blobs.upload("outputs/j/v.mp4", file)).rejects.toMatchObject({
      transient: true,
      message: expect.stringMatching(/no progress from the edge within 300 ms/),
    });
  });
});
