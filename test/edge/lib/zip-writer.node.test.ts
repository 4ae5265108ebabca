import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { crc32 } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { layoutZip, streamZipRange, type ZipFile } from "../../../edge/lib/zip-writer";

const run = promisify(execFile);

/** R2's get with a range, over a Map; records which objects were read and how much of each. */
function bucketOf(objects: Map<string, Uint8Array>) {
  const reads: { key: string; offset: number; length: number }[] = [];
  const bucket = {
    async get(key: string, opts?: { range?: { offset: number; length: number } }) {
      const bytes = objects.get(key);
      if (!bytes) return null;
      const offset = opts?.range?.offset ?? 0;
      const length = opts?.range?.length ?? bytes.length - offset;
      reads.push({ key, offset, length });
      const slice = bytes.subarray(offset, offset + length);
      return { size: bytes.length, body: new Blob([slice]).stream() };
    },
  };
  return { bucket: bucket as unknown as R2Bucket, reads };
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  return Buffer.from(await new Response(stream).arrayBuffer());
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zip-writer-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sample() {
  const objects = new Map<string, Uint8Array>([
    ["outputs/j/a.a1.mp4", randomBytes(70_000)],
    ["outputs/j/b.a1.mp4", randomBytes(1)],
    ["outputs/j/c.a2.mp4", new Uint8Array(0)],
  ]);
  const manifest = new TextEncoder().encode('{"ok":true}\n');
  const when = new Date(Date.UTC(2026, 11, 4, 15, 30, 42));
  const files: ZipFile[] = [
    ...[...objects].map(([key, bytes], i) => ({
      name: ["clip/clip_var01.mp4", "clip/clip_var02.mp4", "Ünïcode clip/Ünïcode clip_var01.mp4"][i]!,
      size: bytes.length,
      crc32: crc32(bytes),
      modified: when,
      body: { key },
    })),
    { name: "manifest.json", size: manifest.length, crc32: crc32(manifest), modified: when, body: { bytes: manifest } },
  ];
  const expected = new Map<string, Uint8Array>(files.map((f) => [f.name, "key" in f.body ? objects.get(f.body.key)! : manifest]));
  return { objects, files, expected };
}

const PYTHON_READ = `
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    print(json.dumps({"bad": bad, "files": [[i.filename, i.file_size, i.compress_type, list(i.date_time), z.read(i).hex()] for i in z.infolist()]}))
`;

describe("the ZIP writer", () => {
  for (const forceZip64 of [false, true]) {
    it(`writes an archive that unzip and Python's zipfile read back byte for byte, CRCs checked${forceZip64 ? " (every field through ZIP64 records)" : ""}`, async () => {
      const { objects, files, expected } = sample();
      const layout = layoutZip(files, { forceZip64 });
      const { bucket } = bucketOf(objects);
      const zip = await collect(streamZipRange(bucket, layout, 0, layout.length - 1));
      expect(zip.length).toBe(layout.length);
      const path = join(dir, "a.zip");
      await writeFile(path, zip);

      const tested = await run("unzip", ["-t", path]);
      expect(tested.stdout).toContain("No errors detected");
      // Unzipped where the clock is 9 hours off UTC, the files still carry the moment they were made.
      await run("unzip", ["-q", path, "-d", join(dir, "out")], { env: { ...process.env, TZ: "Asia/Tokyo" } });
      for (const [name, bytes] of expected) {
        expect(Buffer.compare(await readFile(join(dir, "out", name)), bytes)).toBe(0);
        expect((await stat(join(dir, "out", name))).mtime.toISOString()).toBe("2026-12-04T15:30:42.000Z");
      }

      const py = JSON.parse((await run("python3", ["-c", PYTHON_READ, path])).stdout) as {
        bad: string | null;
        files: [string, number, number, number[], string][];
      };
      expect(py.bad).toBeNull();
      expect(py.files.map((f) => f[0])).toEqual([...expected.keys()]);
      for (const [name, size, method, dateTime, hex] of py.files) {
        expect(method).toBe(0);
        expect(size).toBe(expected.get(name)!.length);
        expect(hex).toBe(Buffer.from(expected.get(name)!).toString("hex"));
        expect(dateTime).toEqual([2026, 12, 4, 15, 30, 42]);
      }
    });
  }

  it("serves any byte range as exactly those bytes of the whole archive, reading only the objects the range covers", async () => {
    const { objects, files } = sample();
    const layout = layoutZip(files);
    const whole = await collect(streamZipRange(bucketOf(objects).bucket, layout, 0, layout.length - 1));
    const first = layout.parts.find((p) => "key" in p && p.key === "outputs/j/a.a1.mp4")!;
    const ranges: [number, number][] = [
      [0, 0],
      [10, 29],
      [first.at + 100, first.at + 199],
      [first.at + first.length - 5, first.at + first.length + 40],
      [first.at + first.length + 1, layout.length - 1],
      [layout.length - 1, layout.length - 1],
    ];
    // Seeded, so a failing range comes back on the next run.
    let seed = 20261204;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 40; i++) {
      const a = Math.floor(next() * layout.length);
      ranges.push([a, a + Math.floor(next() * (layout.length - a))]);
    }
    for (const [start, end] of ranges) {
      const { bucket, reads } = bucketOf(objects);
      const part = await collect(streamZipRange(bucket, layout, start, end));
      expect(Buffer.compare(part, whole.subarray(start, end + 1)), `bytes ${start}-${end}`).toBe(0);
      // Every read lies inside the range: no object before or after it is touched, and none read from its start.
      for (const r of reads) {
        const p = layout.parts.find((q) => "key" in q && q.key === r.key)!;
        expect(p.at + r.offset).toBeGreaterThanOrEqual(start);
        expect(p.at + r.offset + r.length - 1).toBeLessThanOrEqual(end);
      }
    }
    // A resume 100 bytes into the first output's data reads 100 bytes less of it, and nothing else before it.
    const { bucket, reads } = bucketOf(objects);
    await collect(streamZipRange(bucket, layout, first.at + 100, first.at + first.length - 1));
    expect(reads).toEqual([{ key: "outputs/j/a.a1.mp4", offset: 100, length: first.length - 100 }]);
  });

  it("aborts the download instead of sending other bytes when an output is gone or has another size", async () => {
    const { objects, files } = sample();
    const layout = layoutZip(files);
    const gone = new Map(objects);
    gone.delete("outputs/j/b.a1.mp4");
    await expect(collect(streamZipRange(bucketOf(gone).bucket, layout, 0, layout.length - 1))).rejects.toThrow(/missing/);
    const resized = new Map(objects);
    resized.set("outputs/j/b.a1.mp4", new Uint8Array(2));
    await expect(collect(streamZipRange(bucketOf(resized).bucket, layout, 0, layout.length - 1))).rejects.toThrow(/2 bytes, recorded 1/);
  });

  it("lays out outputs past 4 GiB with ZIP64 sizes and offsets that Python reads (a sparse 5 GiB file)", async () => {
    const big = 5 * 2 ** 30;
    // The big entry is only listed, never read (its CRC is not checked); the small one after it is read and checked.
    const bigCrc = 0;
    const small = new TextEncoder().encode("after the big one");
    const when = new Date(Date.UTC(2026, 0, 2, 3, 4, 6));
    const layout = layoutZip([
      { name: "big.mp4", size: big, crc32: bigCrc, modified: when, body: { key: "big" } },
      { name: "small.txt", size: small.length, crc32: crc32(small), modified: when, body: { bytes: small } },
    ]);
    const path = join(dir, "big.zip");
    const file = await open(path, "w");
    try {
      for (const p of layout.parts) if ("bytes" in p) await file.write(p.bytes, 0, p.length, p.at);
      await file.truncate(layout.length);
    } finally {
      await file.close();
    }
    const py = `
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    print(json.dumps({"files": [[i.filename, i.file_size, i.header_offset] for i in z.infolist()], "small": z.read("small.txt").decode()}))
`;
    const out = JSON.parse((await run("python3", ["-c", py, path])).stdout) as { files: [string, number, number][]; small: string };
    expect(out.files).toEqual([
      ["big.mp4", big, 0],
      ["small.txt", small.length, layout.parts[layout.parts.findIndex((p) => "bytes" in p && p.bytes === small) - 1]!.at],
    ]);
    expect(out.small).toBe("after the big one");
  });
});
