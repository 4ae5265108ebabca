import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEncodeArgs, probeMedia, spawnFfmpeg, verifyOutput } from "../../runner/ffmpeg";
import { deriveParams } from "../../runner/params";
import {
  encodeSamples,
  keepEncodeSamples,
  pickSampleTimes,
  probeKeyframes,
  SAMPLE_FRACTIONS,
  sampleKeyframes,
  sourceSamples,
  sourceSampleTimes,
} from "../../runner/samples";
import { makeClip } from "../helpers/clips";

describe("samples: pure parts", () => {
  it("samples near fixed fractions, on a source keyframe when one is near (rounded up), else exactly there", () => {
    // 30 s, keyframes every 8.33 s: 3 s and 21 s have none within 3 s.
    expect(pickSampleTimes(30_000, [0, 8.333333, 16.666667, 25])).toEqual([0, 8.334, 16.667, 21, 25]);
    // No keyframes known: exactly the fractions.
    expect(pickSampleTimes(10_000, [])).toEqual(SAMPLE_FRACTIONS.map((f) => f * 10));
    expect(sampleKeyframes([1, 2], 1.02)).toEqual(["-force_key_frames", "0.980,1.960"]);
  });
});

describe("samples: the source's frames at the sample times", { timeout: 120_000 }, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "vr-samples-test-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("a source sample on a keyframe is that keyframe's picture, in an open GOP too (what the output's forced keyframe shows)", async () => {
    const run = promisify(execFile);
    const source = join(dir, "open-gop.mp4");
    // Open GOP with B-frames: the leading frames of each keyframe reference the GOP before it.
    await run("ffmpeg", [
      "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=12",
      "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-x264-params", "open-gop=1:keyint=60:min-keyint=60:scenecut=0", source,
    ]);
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    const keyframes = await probeKeyframes("ffprobe", source);
    const times = await sourceSampleTimes("ffprobe", src);
    const frameBytes = 320 * 240;
    const gray = async (args: string[]) =>
      (await run("ffmpeg", ["-v", "error", "-nostdin", ...args, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"], { encoding: "buffer", maxBuffer: 64 << 20 })).stdout;
    const samples = await gray(["-i", await sourceSamples("ffmpeg", "ffprobe", src)]);
    // The reference: every keyframe's picture, decoded from the start of the file.
    const pictures = await gray(["-i", source, "-vf", "select=eq(pict_type\\,I)"]);
    expect(samples.length).toBe(SAMPLE_FRACTIONS.length * frameBytes);
    times.forEach((t, i) => {
      const k = keyframes.findIndex((x) => Math.ceil(x * 1000) / 1000 === t);
      expect(k, `sample ${t} s sits on a keyframe`).toBeGreaterThanOrEqual(0);
      const got = samples.subarray(i * frameBytes, (i + 1) * frameBytes);
      const want = pictures.subarray(k * frameBytes, (k + 1) * frameBytes);
      let diff = 0;
      for (let j = 0; j < got.length; j++) diff += Math.abs(got[j]! - want[j]!);
      expect(diff / got.length, `sample ${t} s`).toBeLessThan(0.5);
    });
  });

  /** Encodes `source` with its samples picked out of the encode (as the runner's first encode of a source does). */
  async function encodeWithSamples(source: string, name: string) {
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    const samples = await encodeSamples("ffprobe", src);
    expect(samples, "no sample file in place yet").not.toBeNull();
    const output = join(dir, `${name}.mp4`);
    const times = await sourceSampleTimes("ffprobe", src);
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

  it("the encode picks the source's samples out of its own decode: the very frames the seeks read (keyframe and in-between samples, open GOP)", async () => {
    const run = promisify(execFile);
    // 12 s with x264's default GOP (keyframes at 0 and 8.3 s): samples on keyframes and between them.
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
      // The fallback: seeking for each sample (no sample file in place yet for this path).
      const fromSeeks = await grayFrames(["-i", await sourceSamples("ffmpeg", "ffprobe", src)]);
      expect(fromEncode.length).toBe(SAMPLE_FRACTIONS.length * 320 * 240);
      expect(fromEncode.equals(fromSeeks), source).toBe(true);
    }
  });

  it("an MPEG-TS source (no index: its seeks land approximately) gets the frames at its sample times from the encode", async () => {
    const run = promisify(execFile);
    const source = join(dir, "offset.ts");
    // Timestamps starting at 1.5 s, a keyframe every 3 s.
    await run("ffmpeg", [
      "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=9",
      "-c:v", "libx264", "-preset", "ultrafast", "-g", "75", "-output_ts_offset", "1.5", "-f", "mpegts", source,
    ]);
    const { samples, times, media } = await encodeWithSamples(source, "ts");
    const got = await grayFrames(["-i", samples.file]);
    // The reference: every frame of a full decode, and its time from the start of the stream.
    const all = await grayFrames(["-i", source]);
    const { stdout } = await run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0", source]);
    // One line per frame ("2.900000,"), with blank lines between some of them.
    const pts = stdout.split("\n").map((l) => l.split(",")[0]!.trim()).filter(Boolean).map(Number);
    const fb = media.width * media.height;
    expect(all.length).toBe(pts.length * fb);
    const keyframes = await probeKeyframes("ffprobe", source);
    times.forEach((t, i) => {
      const onKeyframe = keyframes.some((k) => Math.ceil(k * 1000) / 1000 === t);
      // On a keyframe: that keyframe (its time rounded up to the ms); else the first frame at or after t.
      const want = pts.findIndex((p) => p - pts[0]! >= (onKeyframe ? t - 0.00101 : t - 0.00001));
      expect(want, `a frame for ${t} s`).toBeGreaterThanOrEqual(0);
      expect(got.subarray(i * fb, (i + 1) * fb).equals(all.subarray(want * fb, (want + 1) * fb)), `sample ${i} at ${t} s`).toBe(true);
    });
  });

  it("a verified encode's samples become the source's sample file (no second FFmpeg); an incomplete one is dropped", async () => {
    const source = join(dir, "kept-samples.mp4");
    await copyFile(await makeClip({ seconds: 3, width: 320, height: 240 }), source);
    const { media, src, samples } = await encodeWithSamples(source, "kept");
    // Cut short, as an encode stopped early would leave it: not kept, the measurement seeks for the samples.
    await truncate(samples.file, 1000);
    expect(await keepEncodeSamples(samples, { ...src, width: media.width, height: media.height })).toBe(false);
    await expect(stat(samples.file)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await encodeSamples("ffprobe", src), "still no sample file in place").not.toBeNull();

    const again = await encodeWithSamples(source, "kept-again");
    expect(await keepEncodeSamples(again.samples, { ...src, width: media.width, height: media.height })).toBe(true);
    // In place: later encodes write none, and the measurement reads it without running FFmpeg (a missing binary).
    expect(await encodeSamples("ffprobe", src)).toBeNull();
    const kept = await sourceSamples("/nonexistent/ffmpeg", "ffprobe", src);
    expect((await stat(kept)).size).toBeGreaterThanOrEqual(SAMPLE_FRACTIONS.length * media.width * media.height);
  });

  it("a variation stopped while its source is probed and sampled does not cost its siblings their figures", async () => {
    // A path of its own: the probe and the samples are shared per source path in this process.
    const source = join(dir, "shared-source.mp4");
    await copyFile(await makeClip({ seconds: 2, width: 320, height: 240 }), source);
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    const stopped = new AbortController();
    const first = sourceSampleTimes("ffprobe", src, stopped.signal);
    const sibling = sourceSampleTimes("ffprobe", src);
    stopped.abort();
    await expect(first).rejects.toMatchObject({ code: "ABORT_ERR" });
    expect(await sibling).toHaveLength(SAMPLE_FRACTIONS.length);

    // Two siblings waiting on the stopped one: one of them makes the file again and the other waits for it (two
    // FFmpeg runs writing one temporary file made one of them fail its rename).
    const stoppedToo = new AbortController();
    const firstSamples = sourceSamples("ffmpeg", "ffprobe", src, stoppedToo.signal);
    const siblingSamples = sourceSamples("ffmpeg", "ffprobe", src);
    const thirdSamples = sourceSamples("ffmpeg", "ffprobe", src);
    stoppedToo.abort();
    await expect(firstSamples).rejects.toMatchObject({ code: "ABORT_ERR" });
    const [a, b] = await Promise.all([siblingSamples, thirdSamples]);
    expect(a).toBe(b);
    expect((await stat(a)).size).toBeGreaterThan(0);
  });
});
