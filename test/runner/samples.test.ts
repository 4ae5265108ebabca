import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEncodeArgs, probeMedia, spawnFfmpeg, verifyOutput } from "../../runner/ffmpeg";
import { deriveParams } from "../../runner/params";
import { encodeSamples, keepEncodeSamples, SAMPLE_FRACTIONS, sampleKeyframes, sampleTimes, sourceSamples } from "../../runner/samples";
import { makeClip } from "../helpers/clips";

describe("samples: pure parts", () => {
  it("samples at fixed fractions of the duration, to the millisecond, from the duration alone", () => {
    expect(sampleTimes(30_000)).toEqual([3, 9, 15, 21, 27]);
    expect(sampleTimes(10_010)).toEqual([1.001, 3.003, 5.005, 7.007, 9.009]);
    expect(sampleTimes(2_345)).toEqual(SAMPLE_FRACTIONS.map((f) => Math.floor(2_345 * f) / 1000));
    expect(sampleKeyframes([1, 2], 1.02)).toEqual(["-force_key_frames", "0.980,1.960"]);
  });
});

describe("samples: the source's frames at the sample times", { timeout: 120_000 }, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "vr-samples-test-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** Encodes `source` with its samples picked out of the encode (as the runner's first encode of a source does). */
  async function encodeWithSamples(source: string, name: string) {
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    const samples = await encodeSamples(src);
    expect(samples, "no sample file in place yet").not.toBeNull();
    const output = join(dir, `${name}.mp4`);
    const times = sampleTimes(src.durationMs);
    const plan = buildEncodeArgs({ source, output, params: deriveParams(3), media, keyframes: sampleKeyframes(times, 1), samples: samples! });
    const proc = spawnFfmpeg("ffmpeg", plan.args, () => {});
    expect((await proc.exited).code, proc.stderrTail()).toBe(0);
    await verifyOutput(output, plan.expectedDurationMs);
    return { media, src, samples: samples!, times };
  }

  const grayFrames = async (args: string[]) =>
    (await promisify(execFile)("ffmpeg", ["-v", "error", "-nostdin", ...args, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"], {
      encoding: "buffer",
      maxBuffer: 64 << 20,
    })).stdout;

  it("the encode picks the source's samples out of its own decode: the very frames a decode of their own gives (long GOP, open GOP with B-frames)", async () => {
    const run = promisify(execFile);
    // 12 s with x264's default GOP (keyframes at 0 and 8.3 s), and an open GOP whose leading B-frames reference the
    // GOP before: the effects' filters must not touch the frames the samples branch gets.
    const longGop = join(dir, "long-gop.mp4");
    await copyFile(await makeClip({ seconds: 12, width: 320, height: 240 }), longGop);
    const openGop = join(dir, "open-gop-2.mp4");
    await run("ffmpeg", [
      "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=10",
      "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-x264-params", "open-gop=1:keyint=60:min-keyint=60:scenecut=0", openGop,
    ]);
    for (const source of [longGop, openGop]) {
      const { src, samples } = await encodeWithSamples(source, `enc-${source.endsWith("long-gop.mp4") ? "long" : "open"}`);
      const fromEncode = await grayFrames(["-i", samples.file]);
      // The fallback: a decode of its own (no sample file in place yet for this path).
      const fromSeeks = await grayFrames(["-i", await sourceSamples("ffmpeg", src)]);
      expect(fromEncode.length).toBe(SAMPLE_FRACTIONS.length * 320 * 240);
      expect(fromEncode.equals(fromSeeks), source).toBe(true);
    }
  });

  it("an MPEG-TS source (no index: seeks land elsewhere) gets the frames at its sample times, from the encode and from the fallback", async () => {
    const run = promisify(execFile);
    const source = join(dir, "offset.ts");
    // Timestamps starting at 1.5 s, a keyframe every 3 s.
    await run("ffmpeg", [
      "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=9",
      "-c:v", "libx264", "-preset", "ultrafast", "-g", "75", "-output_ts_offset", "1.5", "-f", "mpegts", source,
    ]);
    const { samples, times, media, src } = await encodeWithSamples(source, "ts");
    const got = await grayFrames(["-i", samples.file]);
    // The reference: every frame of a full decode, and its time from the start of the stream.
    const all = await grayFrames(["-i", source]);
    const { stdout } = await run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0", source]);
    // One line per frame ("2.900000,"), with blank lines between some of them.
    const pts = stdout.split("\n").map((l) => l.split(",")[0]!.trim()).filter(Boolean).map(Number);
    const fb = media.width * media.height;
    expect(all.length).toBe(pts.length * fb);
    times.forEach((t, i) => {
      // The first frame at or after t.
      const want = pts.findIndex((p) => p - pts[0]! >= t - 0.00001);
      expect(want, `a frame for ${t} s`).toBeGreaterThanOrEqual(0);
      expect(got.subarray(i * fb, (i + 1) * fb).equals(all.subarray(want * fb, (want + 1) * fb)), `sample ${i} at ${t} s`).toBe(true);
    });
    expect(got.length).toBe(SAMPLE_FRACTIONS.length * fb);
    // Seeking got 3 of these 5 wrong and 2 missing; the fallback decodes as the encode does.
    expect((await grayFrames(["-i", await sourceSamples("ffmpeg", src)])).equals(got)).toBe(true);
  });

  it("a verified encode's samples become the source's sample file (no second FFmpeg); an incomplete one is dropped", async () => {
    const source = join(dir, "kept-samples.mp4");
    await copyFile(await makeClip({ seconds: 3, width: 320, height: 240 }), source);
    const { media, src, samples } = await encodeWithSamples(source, "kept");
    // Cut short, as an encode stopped early would leave it: not kept, the measurement's fallback makes them.
    await truncate(samples.file, 1000);
    expect(await keepEncodeSamples(samples, { ...src, width: media.width, height: media.height })).toBe(false);
    await expect(stat(samples.file)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await encodeSamples(src), "still no sample file in place").not.toBeNull();

    const again = await encodeWithSamples(source, "kept-again");
    expect(await keepEncodeSamples(again.samples, { ...src, width: media.width, height: media.height })).toBe(true);
    // In place: later encodes write none, and the measurement reads it without running FFmpeg (a missing binary).
    expect(await encodeSamples(src)).toBeNull();
    const kept = await sourceSamples("/nonexistent/ffmpeg", src);
    expect((await stat(kept)).size).toBeGreaterThanOrEqual(SAMPLE_FRACTIONS.length * media.width * media.height);
  });

  it("siblings waiting on a stopped variation's fallback samples make them once, and get them", async () => {
    // A path of its own: the fallback's run is shared per source path in this process.
    const source = join(dir, "shared-source.mp4");
    await copyFile(await makeClip({ seconds: 2, width: 320, height: 240 }), source);
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    // Two siblings waiting on the stopped one: one of them makes the file again and the other waits for it (two
    // FFmpeg runs writing one temporary file made one of them fail its rename).
    const stopped = new AbortController();
    const firstSamples = sourceSamples("ffmpeg", src, stopped.signal);
    const siblingSamples = sourceSamples("ffmpeg", src);
    const thirdSamples = sourceSamples("ffmpeg", src);
    stopped.abort();
    await expect(firstSamples).rejects.toMatchObject({ code: "ABORT_ERR" });
    const [a, b] = await Promise.all([siblingSamples, thirdSamples]);
    expect(a).toBe(b);
    expect((await stat(a)).size).toBeGreaterThanOrEqual(SAMPLE_FRACTIONS.length * media.width * media.height);
  });
});
