import { describe, expect, it } from "vitest";
import { crc32 } from "../../../edge/lib/crc32";
import { zipFiles, type DigestedEntry } from "../../../edge/lib/zip";
import { zipEtag } from "../../../edge/lib/zip-resume";
import { layoutZip } from "../../../edge/lib/zip-writer";

const job = { id: "job-1", effects: "{}" };
const entry: DigestedEntry = {
  sourceId: "s1",
  sourceName: "clip.mp4",
  sourcePosition: 0,
  position: 1,
  key: "outputs/job-1/v1.a1.mp4",
  size: 10,
  sha256: "a".repeat(64),
  crc32: 123,
  finishedAt: Date.UTC(2026, 11, 4, 12),
  seed: 7,
  params: null,
  sourceDurationMs: 2_000,
  ssim: null,
  psnr: null,
  distinct: null,
  name: "clip/clip_var01.mp4",
};

const etagOf = (j: typeof job, entries: DigestedEntry[]) => zipEtag(layoutZip(zipFiles(j, entries)));

describe("the ETag of a job's ZIP download", () => {
  it("is the same for the same entries, so a resumed download continues the same archive", async () => {
    expect(await etagOf(job, [entry])).toBe(await etagOf(job, [{ ...entry }]));
    expect(await etagOf(job, [entry])).toMatch(/^"zip-[0-9a-f]{32}"$/);
  });

  it("changes with every recorded field the archive's bytes depend on, so a resume never splices two archives", async () => {
    const base = await etagOf(job, [entry]);
    const changed: Partial<DigestedEntry>[] = [
      { sha256: "b".repeat(64) },
      { crc32: 124 },
      { size: 11 },
      { key: "outputs/job-1/v1.a2.mp4" },
      { finishedAt: Date.UTC(2026, 11, 4, 14) },
      { seed: 8 },
      { params: '{"zoom":1.01}' },
      { sourceName: "other.mp4" },
      { sourceDurationMs: 2_001 },
      { ssim: 0.97 },
      { psnr: 40 },
      { distinct: 2.5 },
      { position: 2, name: "clip/clip_var02.mp4" },
      { name: "clip-2/clip-2_var01.mp4" },
    ];
    const seen = new Set([base]);
    for (const c of changed) {
      const etag = await etagOf(job, [{ ...entry, ...c }]);
      expect(seen.has(etag), JSON.stringify(c)).toBe(false);
      seen.add(etag);
    }
    expect(await etagOf({ ...job, id: "job-2" }, [entry])).not.toBe(base);
    expect(await etagOf({ ...job, effects: '{"intensity":"strong"}' }, [entry])).not.toBe(base);
    expect(await etagOf(job, [entry, { ...entry, key: "outputs/job-1/v2.a1.mp4", position: 2, name: "clip/clip_var02.mp4" }])).not.toBe(base);
  });
});

describe("the edge's CRC-32", () => {
  it("is the one ZIP uses (the check value of \"123456789\"), continued across chunks", () => {
    const bytes = new TextEncoder().encode("123456789");
    expect(crc32(bytes)).toBe(0xcbf43926);
    expect(crc32(bytes.subarray(4), crc32(bytes.subarray(0, 4)))).toBe(0xcbf43926);
  });
});
