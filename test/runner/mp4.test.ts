import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyOutput } from "../../runner/ffmpeg";
import { Mp4Error, readMp4 } from "../../runner/mp4";
import { makeClip, probeFile } from "../helpers/clips";

const run = promisify(execFile);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-mp4-test-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function encode(name: string, extra: string[], seconds = 3): Promise<string> {
  const clip = await makeClip({ seconds });
  const out = join(dir, name);
  await run("ffmpeg", ["-v", "error", "-y", "-i", clip, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", ...extra, out]);
  return out;
}

describe("readMp4", () => {
  it("reads the duration and the tracks' codecs as ffprobe sees them, with and without faststart", async () => {
    for (const [name, extra] of [["fast.mp4", ["-movflags", "+faststart"]], ["plain.mp4", []]] as const) {
      const out = await encode(name, [...extra]);
      const mine = await readMp4(out);
      const probe = await probeFile(out);
      expect(Math.abs(mine.durationMs - probe.durationMs)).toBeLessThan(30);
      expect(mine.tracks.map((t) => [t.handler, t.format])).toEqual([["vide", "avc1"], ["soun", "mp4a"]]);
    }
  });

  it("refuses a file cut short anywhere, one never finalised, and one that is not an MP4", async () => {
    const fast = await encode("cut-fast.mp4", ["-movflags", "+faststart"]);
    const size = (await readFile(fast)).length;
    await truncate(fast, size - 1000);
    await expect(readMp4(fast)).rejects.toThrow(/truncated mdat box/);

    // Without faststart the moov comes last: a file cut before it was never finalised.
    const plain = await encode("cut-plain.mp4", []);
    const bytes = await readFile(plain);
    const moovAt = bytes.indexOf("moov") - 4;
    await writeFile(plain, bytes.subarray(0, moovAt));
    await expect(readMp4(plain)).rejects.toThrow(/no moov box/);

    const text = join(dir, "notes.mp4");
    await writeFile(text, "hello, this is not a video at all");
    await expect(readMp4(text)).rejects.toBeInstanceOf(Mp4Error);
    await writeFile(text, "");
    await expect(readMp4(text)).rejects.toThrow(/empty file/);
  });
});

describe("verifyOutput", () => {
  it("accepts a complete H.264 output and names what is wrong with others (codec, length)", async () => {
    const good = await encode("good.mp4", ["-movflags", "+faststart"]);
    await expect(verifyOutput(good, 3000)).resolves.toMatchObject({ durationMs: expect.any(Number) });
    await expect(verifyOutput(good, 6000)).rejects.toThrow(/incomplete: \d+ ms of 6000 ms/);
    const clip = await makeClip({ seconds: 3 });
    const mpeg4 = join(dir, "mpeg4.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-i", clip, "-c:v", "mpeg4", "-an", mpeg4]);
    await expect(verifyOutput(mpeg4, 3000)).rejects.toThrow(/codec is mp4v, expected h264/);
    const cut = join(dir, "cut.mp4");
    await writeFile(cut, (await readFile(good)).subarray(0, 2000));
    await expect(verifyOutput(cut, 3000)).rejects.toThrow(/not a valid video/);
  });
});
