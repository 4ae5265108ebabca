import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient } from "../../cli/client";
import { downloadJob } from "../../cli/download";
import { CliError } from "../../cli/errors";
import type { Progress } from "../../cli/progress";

/** The whole "ZIP" a stand-in edge serves, and where its 206 claims its range starts (`start`). */
const ZIP = Buffer.from("0123456789abcdefghij");
let start = 10;
let server: Server;
let url: string;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-cli-download-"));
  server = createServer((req, res) => {
    if (!req.headers.range) return void res.writeHead(200, { "content-length": String(ZIP.length), etag: '"z1"' }).end(ZIP);
    const body = ZIP.subarray(start);
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
    expect(result).toMatchObject({ resumedFrom: 10, bytes: 20 });
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
    expect((await downloadJob(apiClient(url, "t"), url, "j1", out, quiet, false)).bytes).toBe(20);
    expect(await readFile(join(out, "video-refresher-j1.zip"))).toEqual(ZIP);
  });
});
