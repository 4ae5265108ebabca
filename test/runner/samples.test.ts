import { execFile } from "node:child_process";
import { chmod, chown, copyFile, mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FFMPEG_OUT, makeJobDir } from "../../runner/workdir";
import { buildEncodeArgs, probeMedia, spawnFfmpeg, verifyOutput } from "../../runner/ffmpeg";
import { parseStoredEffects } from "../../db/effects";
import { deriveParams, type EffectParams } from "../../runner/params";
import { measureQuality } from "../../runner/quality";
import { encodeSamples, keepEncodeSamples, SAMPLE_FRACTIONS, SAMPLES_SKIP, sampleKeyframes, samplesFile, sampleTimes, sourceSamples } from "../../runner/samples";
import { configureChildren } from "../../runner/child-env";
import { resolveExecutable } from "../../runner/config";
import { makeClip } from "../helpers/clips";
import { until } from "../helpers/until";

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
    // Laid out as a job's directory of the runner: sample files are made in its out/, where FFmpeg writes.
    await makeJobDir(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** Encodes `source` with its samples picked out of the encode (as the runner's first encode of a source does). */
  async function encodeWithSamples(source: string, name: string, params: EffectParams = deriveParams(3)) {
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    const samples = await encodeSamples(src);
    expect(samples, "no sample file in place yet").not.toBeNull();
    const output = join(dir, `${name}.mp4`);
    const times = sampleTimes(src.durationMs);
    const plan = buildEncodeArgs({ source, output, params, media, keyframes: sampleKeyframes(times, params.speed), samples: samples! });
    const proc = spawnFfmpeg("ffmpeg", plan.args, () => {});
    expect((await proc.exited).code, proc.stderrTail()).toBe(0);
    await verifyOutput(output, plan.expectedDurationMs);
    return { media, src, samples: samples!, times, output, plan };
  }

  const run = promisify(execFile);
  const grayFrames = async (args: string[]) =>
    (await run("ffmpeg", ["-v", "error", "-nostdin", ...args, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"], {
      encoding: "buffer",
      maxBuffer: 64 << 20,
    })).stdout;
  const md5s = async (file: string) => (await run("ffmpeg", ["-v", "error", "-nostdin", "-i", file, "-map", "0:v", "-f", "framemd5", "-"])).stdout;

  it("the samples output leaves the encode as it was: same frames, in colour, for a portrait phone video (rotation) with zoom", async () => {
    // A display matrix (rotation 90) makes FFmpeg insert a rotation before the split: the samples branch's gray once
    // travelled up through it and the encode itself came out gray.
    const rotated = join(dir, "rotated.mp4");
    await run("ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", await makeClip({ seconds: 3, width: 320, height: 240 }), "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated]);
    const media = await probeMedia("ffprobe", rotated);
    expect([media.width, media.height]).toEqual([240, 320]);
    const params = deriveParams(5, parseStoredEffects(JSON.stringify({ intensity: "strong", families: ["zoom", "rotate"] })));
    const withSamples = await encodeWithSamples(rotated, "rotated-samples", params);
    const plain = buildEncodeArgs({ source: rotated, output: join(dir, "rotated-plain.mp4"), params, media, keyframes: sampleKeyframes(withSamples.times, 1) });
    const proc = spawnFfmpeg("ffmpeg", plain.args, () => {});
    expect((await proc.exited).code, proc.stderrTail()).toBe(0);
    expect(await md5s(withSamples.output)).toBe(await md5s(join(dir, "rotated-plain.mp4")));
    // And in colour: the chroma planes of a testsrc2 frame are far from flat.
    const { stderr } = await run("ffmpeg", ["-hide_banner", "-i", withSamples.output, "-vf", "signalstats,metadata=print:key=lavfi.signalstats.SATAVG", "-frames:v", "1", "-f", "null", "-"]);
    expect(Number(/SATAVG=([\d.]+)/.exec(stderr)?.[1])).toBeGreaterThan(20);
  });

  it("the encode reports progress from its start, not from the first sample time (the stall watchdog's clock)", async () => {
    const source = join(dir, "progress.mp4");
    await copyFile(await makeClip({ seconds: 20, width: 320, height: 240 }), source);
    const media = await probeMedia("ffprobe", source);
    const samples = (await encodeSamples({ path: source, durationMs: media.durationMs, fps: media.fps }))!;
    const plan = buildEncodeArgs({ source, output: join(dir, "progress-out.mp4"), params: deriveParams(3), media, samples });
    // Read at the source's own rate: the output time then follows the clock, whatever the machine's speed. The first
    // sample is at 2 s; FFmpeg reports every 0.5 s once every output has its header.
    const args = [...plan.args];
    args.splice(args.indexOf("-i"), 0, "-re");
    let first: number | null = null;
    const proc = spawnFfmpeg("ffmpeg", args, (ms) => {
      if (first === null) {
        first = ms;
        proc.child.stdin?.write("q");
      }
    });
    await proc.exited;
    expect(first, "a progress report").not.toBeNull();
    expect(first!).toBeLessThan(1500);
  });

  it("each source sample is the frame the output shows at its forced keyframe (no effects: the same picture)", async () => {
    const source = join(dir, "aligned.mp4");
    // 10 fps, 4.37 s: the sample times fall between source frames (0.437 s: frames at 0.4 and 0.5 s, and the output
    // frame at 0.467 s still shows the one of 0.4 s).
    await copyFile(await makeClip({ seconds: 4.37, width: 320, height: 240, fps: 10 }), source);
    // Only a mirror, which the measurement flips back: the pictures differ by the encode alone. A sample one frame
    // off (testsrc2 moves every frame) costs about 10 dB.
    const params = deriveParams(1, parseStoredEffects(JSON.stringify({ intensity: "subtle", families: ["mirror"] })));
    const { src, output, plan, samples, media } = await encodeWithSamples(source, "aligned-out", params);
    expect(await keepEncodeSamples(samples, { ...src, width: media.width, height: media.height })).toBe(true);
    const q = await measureQuality("ffmpeg", { source: src, speed: 1, output, thumbnail: join(dir, "aligned.jpg"), params, geometry: plan.geometry });
    expect(q.psnr).toBeGreaterThan(30);
  });

  it("the encode picks the source's samples out of its own decode: the very frames a decode of their own gives (long GOP, open GOP with B-frames)", async () => {
    // 12 s with x264's default GOP (keyframes at 0 and 8.3 s), and an open GOP whose leading B-frames reference the
    // GOP before: the effects' filters must not touch the frames the samples branch gets.
    const longGop = join(dir, "long-gop.mp4");
    await copyFile(await makeClip({ seconds: 12, width: 320, height: 240 }), longGop);
    const openGop = join(dir, "open-gop.mp4");
    await run("ffmpeg", [
      "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=10",
      "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-x264-params", "open-gop=1:keyint=60:min-keyint=60:scenecut=0", openGop,
    ]);
    for (const source of [longGop, openGop]) {
      const { src, samples } = await encodeWithSamples(source, `enc-${source.endsWith("long-gop.mp4") ? "long" : "open"}`);
      const fromEncode = await grayFrames(["-i", samples.file]);
      // The fallback: a decode of its own (no sample file in place yet for this path).
      const fromFallback = await grayFrames(["-i", await sourceSamples("ffmpeg", src)]);
      expect(fromEncode.length).toBe((SAMPLES_SKIP + SAMPLE_FRACTIONS.length) * 320 * 240);
      expect(fromEncode.equals(fromFallback), source).toBe(true);
    }
  });

  it("an MPEG-TS source (no index: seeks land elsewhere) gets the frames nearest its sample times, from the encode and from the fallback", async () => {
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
    expect(got.length).toBe((SAMPLES_SKIP + SAMPLE_FRACTIONS.length) * fb);
    times.forEach((t, i) => {
      // The frame nearest t (25 fps: 20 ms either side; a tie goes to the later frame).
      const want = pts.findIndex((p) => p - pts[0]! >= t - 0.02 + 0.000001);
      expect(want, `a frame for ${t} s`).toBeGreaterThanOrEqual(0);
      const at = (SAMPLES_SKIP + i) * fb;
      expect(got.subarray(at, at + fb).equals(all.subarray(want * fb, (want + 1) * fb)), `sample ${i} at ${t} s`).toBe(true);
    });
    // Seeking got 3 of these 5 wrong and 2 missing; the fallback decodes as the encode does.
    expect((await grayFrames(["-i", await sourceSamples("ffmpeg", src)])).equals(got)).toBe(true);
  });

  it("a verified encode's samples become the source's sample file (no second FFmpeg); an incomplete one is dropped", async () => {
    const source = join(dir, "kept-samples.mp4");
    await copyFile(await makeClip({ seconds: 3, width: 320, height: 240 }), source);
    const { media, src, samples } = await encodeWithSamples(source, "kept");
    const size = (SAMPLES_SKIP + SAMPLE_FRACTIONS.length) * media.width * media.height;
    // Cut short, as an encode stopped early would leave it: not kept, the measurement's fallback makes them.
    await truncate(samples.file, size - 1);
    expect(await keepEncodeSamples(samples, { ...src, width: media.width, height: media.height })).toBe(false);
    await expect(stat(samples.file)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await encodeSamples(src), "still no sample file in place").not.toBeNull();

    const again = await encodeWithSamples(source, "kept-again");
    expect(await keepEncodeSamples(again.samples, { ...src, width: media.width, height: media.height })).toBe(true);
    // In place: later encodes write none, and the measurement reads it without running FFmpeg (a missing binary).
    expect(await encodeSamples(src)).toBeNull();
    const kept = await sourceSamples("/nonexistent/ffmpeg", src);
    expect((await stat(kept)).size).toBeGreaterThanOrEqual(size);
    // It stays where FFmpeg writes: under FFMPEG_USER, a file of FFmpeg's moved into the job's directory could be a
    // directory or symlink of that user's where the runner, root, walks.
    expect(kept).toBe(join(dir, FFMPEG_OUT, "kept-samples.mp4.samples.nut"));
  });

  it("siblings waiting on a stopped variation's fallback samples make them once between them, and get them", async () => {
    // A path of its own: the fallback's run is shared per source path in this process.
    const source = join(dir, "shared-source.mp4");
    await copyFile(await makeClip({ seconds: 2, width: 320, height: 240 }), source);
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    // An FFmpeg that logs each start, then waits to be killed or told to go on: the first run is stopped while running.
    const log = join(dir, "ffmpeg-runs.log");
    const go = join(dir, "ffmpeg-go");
    const ffmpeg = join(dir, "ffmpeg-logged");
    await writeFile(ffmpeg, `#!/bin/sh\necho run >> '${log}'\nwhile [ ! -e '${go}' ]; do sleep 0.05; done\nexec ffmpeg "$@"\n`);
    await chmod(ffmpeg, 0o755);
    const runs = async () => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean).length;
    const stopped = new AbortController();
    const firstSamples = sourceSamples(ffmpeg, src, stopped.signal);
    // The siblings come once the first one's FFmpeg runs: they wait on it instead of making their own.
    await until("the first FFmpeg to run", async () => ((await runs()) === 1 ? true : null), 10_000, 20);
    const siblingSamples = sourceSamples(ffmpeg, src);
    const thirdSamples = sourceSamples(ffmpeg, src);
    // Whenever their checks land (before the stop, after it, after the remake), two runs in all: the stopped one and
    // one remake that both wait on or find done.
    stopped.abort();
    await expect(firstSamples).rejects.toMatchObject({ code: "ABORT_ERR" });
    await writeFile(go, "");
    const [a, b] = await Promise.all([siblingSamples, thirdSamples]);
    expect(a).toBe(b);
    expect(await runs(), "FFmpeg runs: the stopped one and one for both siblings").toBe(2);
    expect((await stat(a)).size).toBeGreaterThanOrEqual((SAMPLES_SKIP + SAMPLE_FRACTIONS.length) * media.width * media.height);
  });

  it("a stopped variation waiting on a sibling's fallback samples stops at once, without waiting for that FFmpeg", async () => {
    const source = join(dir, "waiting-source.mp4");
    await copyFile(await makeClip({ seconds: 2, width: 320, height: 240 }), source);
    const media = await probeMedia("ffprobe", source);
    const src = { path: source, durationMs: media.durationMs, fps: media.fps };
    const ffmpeg = join(dir, "ffmpeg-never");
    const started = join(dir, "ffmpeg-never.started");
    await writeFile(ffmpeg, `#!/bin/sh\ntouch '${started}'\nexec sleep 30\n`);
    await chmod(ffmpeg, 0o755);
    const maker = new AbortController();
    const making = sourceSamples(ffmpeg, src, maker.signal);
    await until("the sibling's FFmpeg to run", async () => (await stat(started).then(() => true, () => null)), 10_000, 20);
    const waiter = new AbortController();
    const waiting = sourceSamples(ffmpeg, src, waiter.signal);
    waiter.abort();
    await expect(waiting).rejects.toMatchObject({ code: "ABORT_ERR" });
    maker.abort();
    await expect(making).rejects.toMatchObject({ code: "ABORT_ERR" });
  });
});

// A run of FFMPEG_USER may create names in out/, where a source's sample file lives; only root can switch users.
describe.skipIf(process.getuid?.() !== 0 || !resolveExecutable("setpriv"))("samples: with FFMPEG_USER", () => {
  it("does not take a sample file another run put at the source's sample name for the source's: it is removed and made again", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-samples-planted-"));
    configureChildren({ setpriv: resolveExecutable("setpriv"), user: { uid: 65534, gid: 65534 } });
    try {
      await makeJobDir(dir);
      const src = { path: join(dir, "src-1"), durationMs: 2000, fps: 25 };
      // What another upload's run can do in out/: make the name first, with frames of its choosing.
      const planted = samplesFile(src.path);
      await writeFile(planted, "frames chosen to steer this source's quality figures");
      await chown(planted, 65534, 65534);
      expect(await encodeSamples(src), "the planted file is not the source's").not.toBeNull();
      await expect(stat(planted)).rejects.toMatchObject({ code: "ENOENT" });
      // The runner's own (sealed: root's) is taken as it is.
      await writeFile(planted, "the runner's");
      expect(await encodeSamples(src)).toBeNull();
    } finally {
      configureChildren({ setpriv: null, user: null });
      await rm(dir, { recursive: true, force: true });
    }
  });
});

