import { describe, expect, it } from "vitest";
import type { DigestedEntry } from "../../../edge/lib/zip";
import { zipEtag } from "../../../edge/lib/zip-resume";

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
  finishedAt: 1_000,
  seed: 7,
  params: null,
  sourceDurationMs: 2_000,
  ssim: null,
  psnr: null,
  distinct: null,
  name: "clip/clip_var01.mp4",
};

describe("the ETag of a job's ZIP download", () => {
  it("is the same for the same entries, so a resumed download continues the same archive", async () => {
    expect(await zipEtag(job, [entry])).toBe(await zipEtag(job, [{ ...entry }]));
    expect(await zipEtag(job, [entry])).toMatch(/^"zip-[0-9a-f]{32}"$/);
  });

  it("changes with any recorded field the archive's bytes depend on, so a resume never splices two archives", async () => {
    const base = await zipEtag(job, [entry]);
    const changed: Partial<DigestedEntry>[] = [
      { sha256: "b".repeat(64) },
      { crc32: 124 },
      { size: 11 },
      { key: "outputs/job-1/v1.a2.mp4" },
      { finishedAt: 3_000 },
      { ssim: 0.97 },
      { name: "clip-2/clip-2_var01.mp4" },
    ];
    for (const c of changed) expect(await zipEtag(job, [{ ...entry, ...c }])).not.toBe(base);
    expect(await zipEtag({ ...job, effects: '{"mirror":true}' }, [entry])).not.toBe(base);
  });

});
