import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { crc32 } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient } from "../../cli/client";
import { downloadJob } from "../../cli/download";
import { CliError } from "../../cli/errors";
import type { Progress } from "../../cli/progress";
import { layoutZip } from "../../edge/lib/zip-writer";

/** A job ZIP as the edge lays it out: one video and the manifest that records its SHA-256 (or `sha256`). */
function jobZip(video: Buffer, sha256 = createHash("sha256").update(video).digest("hex")): Buffer {
  const manifest = Buffer.from(JSON.stringify({ job: "j1", effects: {}, entries: [{ file: "clip/clip_var01.mp4", bytes: video.length, sha256 }] }));
  const when = new Date(Date.UTC(2026, 0, 1));
  const layout = layoutZip([
    { name: "clip/clip_var01.mp4", size: video.length, crc32: crc32(video), modified: when, body: { bytes: video } },
    { name: "manifest.json", size: manifest.length, crc32: crc32(manifest), modified: when, body: { bytes: manifest } },
  ]);
  return Buffer.concat(layout.parts.map((p) => ("bytes" in p ? p.bytes : Buffer.alloc(0))));
}

const VIDEO = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
/** The whole ZIP a stand-in edge serves; `ranged` is what its 206 sends from where it claims to start (`start`). */
let ZIP = jobZip(VIDEO);
let ranged = ZIP;
let start = 10;
let server: Server;
let url: string;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-cli-download-"));
  server = createServer((req, res) => {
    if (!req.headers.range) return void res.writeHead(200, { "content-length": String(ZIP.length), etag: '"z1"' }).end(ZIP);
    // Like the edge: a resume from the ZIP's end asks for nothing left.
    if (Number(/^bytes=(\d+)-/.exec(req.headers.range)?.[1]) >= ZIP.length) {
      const body = JSON.stringify({ error: { code: "range_not_satisfiable", message: "past the end" } });
      return void res.writeHead(416, { "content-type": "application/json", "content-range": `bytes */${ZIP.length}`, etag: '"z1"' }).end(body);
    }
    const body = ranged.subarray(start);
    res.writeHead(206, { "content-range": `bytes ${start}-${ZIP.length - 1}/${ZIP.length}`, "content-length": String(body.length), etag: '"z1"' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const quiet: Progress = { bar: () => ({ update() {}, increment() {}, setTotal() {} }), log() {}, stop() {} };

/** An earlier run's leftovers: the first 10 bytes in the .part, and the ETag they belong to. */
async function interrupted(out: string): Promise<string> {
  const part = join(out, "video-refresher-j1.zip.part");
  await writeFile(part, ZIP.subarray(0, 10));
  await writeFile(`${part}.json`, JSON.stringify({ etag: '"z1"' }));
  return part;
}

describe("resuming a download", () => {
  it("appends a range that continues the partial file, giving the whole ZIP", async () => {
    const out = join(dir, "ok");
    await mkdir(out, { recursive: true });
    await interrupted(out);
    start = 10;
    const result = await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false);
    expect(result).toMatchObject({ resumedFrom: 10, bytes: ZIP.length });
    expect(await readFile(join(out, "video-refresher-j1.zip"))).toEqual(ZIP);
  });

  it("refuses a range that starts elsewhere and discards the partial file, instead of writing a corrupt ZIP", async () => {
    const out = join(dir, "bad");
    await mkdir(out, { recursive: true });
    const part = await interrupted(out);
    start = 0;
    const err = await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toMatch(/resumed at byte 0, not 10/);
    await expect(stat(part)).rejects.toThrow();
    await expect(stat(join(out, "video-refresher-j1.zip"))).rejects.toThrow();
    // The next run starts from the beginning and gets it right.
    expect((await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false)).bytes).toBe(ZIP.length);
    expect(await readFile(join(out, "video-refresher-j1.zip"))).toEqual(ZIP);
  });
});

describe("checking a downloaded ZIP", () => {
  it("removes a resumed download whose rest came back with a changed byte, and the next run starts over and gets it right", async () => {
    const out = join(dir, "flipped");
    await mkdir(out, { recursive: true });
    const part = await interrupted(out);
    start = 10;
    // The range answer continues at the right byte, but one byte inside the video differs.
    ranged = Buffer.from(ZIP);
    const at = ZIP.indexOf(VIDEO) + 100;
    ranged.writeUInt8(ranged.readUInt8(at) ^ 0xff, at);
    try {
      const err = await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CliError);
      expect(err).toMatchObject({ exitCode: 4, code: "damaged_download" });
      expect((err as Error).message).toBe(
        "the downloaded ZIP is damaged (clip/clip_var01.mp4: its bytes do not match the ZIP's checksum); it was removed: run the command again",
      );
      expect(await readdir(out)).toEqual([]);
      await expect(stat(part)).rejects.toThrow();
    } finally {
      ranged = ZIP;
    }
    expect((await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false)).resumedFrom).toBe(0);
    expect(await readFile(join(out, "video-refresher-j1.zip"))).toEqual(ZIP);
  });

  it("keeps aside a ZIP the server sent whole whose video is not the one manifest.json records, instead of fetching it forever", async () => {
    const out = join(dir, "manifest");
    await mkdir(out, { recursive: true });
    const good = ZIP;
    ZIP = ranged = jobZip(VIDEO, "0".repeat(64));
    try {
      const err = await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, true).catch((e: unknown) => e);
      // Fetching it again would get the same bytes: exit 1 (not 4, "run again"), and the file is there to report.
      expect(err).toMatchObject({ exitCode: 1, code: "damaged_download" });
      expect((err as Error).message).toBe(
        "the server sent a damaged ZIP (clip/clip_var01.mp4: its bytes do not match the SHA-256 in manifest.json); kept as video-refresher-j1.damaged.zip — please report it",
      );
      expect(await readdir(out)).toEqual(["video-refresher-j1.damaged.zip"]);
      expect(await readFile(join(out, "video-refresher-j1.damaged.zip"))).toEqual(ZIP);
    } finally {
      ZIP = ranged = good;
    }
  });

  it("removes a finished .part whose header was damaged on disk, found when the server has nothing left to send (416)", async () => {
    const out = join(dir, "header");
    await mkdir(out, { recursive: true });
    const part = join(out, "video-refresher-j1.zip.part");
    const damaged = Buffer.from(ZIP);
    damaged.writeUInt8(damaged.readUInt8(0) ^ 0xff, 0);
    await writeFile(part, damaged);
    await writeFile(`${part}.json`, JSON.stringify({ etag: '"z1"' }));
    const err = await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false).catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: 4, code: "damaged_download" });
    expect(await readdir(out)).toEqual([]);
    // Before, a format error escaped as a plain error and the .part stayed: every run met the same 416 and failed.
    expect((await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false)).resumedFrom).toBe(0);
    expect(await readFile(join(out, "video-refresher-j1.zip"))).toEqual(ZIP);
  });
});
