import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DamagedZip, verifyJobZip } from "../../cli/verify-zip";
import { layoutZip } from "../../edge/lib/zip-writer";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-verify-zip-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const when = new Date(Date.UTC(2026, 0, 1));
const file = (name: string, bytes: Buffer) => ({ name, size: bytes.length, crc32: crc32(bytes), modified: when, body: { bytes } });

/** A ZIP of these videos with a manifest.json that lists `listed` of them (all by default). */
async function zipOf(name: string, videos: [string, Buffer][], listed = videos): Promise<string> {
  const entries = listed.map(([f, b]) => ({ file: f, bytes: b.length, sha256: createHash("sha256").update(b).digest("hex") }));
  const manifest = Buffer.from(JSON.stringify({ job: "j", effects: {}, entries }));
  const layout = layoutZip([...videos.map(([f, b]) => file(f, b)), file("manifest.json", manifest)]);
  const path = join(dir, name);
  await writeFile(path, Buffer.concat(layout.parts.map((p) => ("bytes" in p ? p.bytes : Buffer.alloc(0)))));
  return path;
}

const a: [string, Buffer] = ["clip/clip_var01.mp4", Buffer.from("first video")];
const b: [string, Buffer] = ["clip/clip_var02.mp4", Buffer.from("second video")];

describe("verifyJobZip", () => {
  it("accepts a job ZIP whose every video is the one its manifest lists", async () => {
    expect(await verifyJobZip(await zipOf("ok.zip", [a, b]))).toEqual({ entries: 3 });
  });

  it("reports the bytes it has checked as it goes, up to every entry's bytes", async () => {
    const seen: number[] = [];
    await verifyJobZip(await zipOf("progress.zip", [a, b]), (n) => seen.push(n));
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual([...seen].sort((x, y) => x - y));
    const manifestBytes = seen.at(-1)! - a[1].length - b[1].length;
    expect(manifestBytes).toBeGreaterThan(0);
    expect(seen).toContain(a[1].length);
  });

  it("refuses a video in the ZIP that manifest.json does not list", async () => {
    const err = await verifyJobZip(await zipOf("stray.zip", [a, b], [a])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DamagedZip);
    expect((err as Error).message).toBe("clip/clip_var02.mp4 is in the ZIP but not in manifest.json");
  });

  it("calls a file that is not a ZIP damaged, but leaves this machine's own read errors as they are", async () => {
    const junk = join(dir, "junk.zip");
    await writeFile(junk, "not a zip at all");
    expect(await verifyJobZip(junk).catch((e: unknown) => e)).toBeInstanceOf(DamagedZip);
    // A directory where the file should be: EISDIR is the disk's answer, not the download's fault.
    const notAFile = join(dir, "dir.zip");
    await mkdir(notAFile);
    const err = await verifyJobZip(notAFile).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(DamagedZip);
    expect(err).toMatchObject({ code: "EISDIR" });
  });
});
