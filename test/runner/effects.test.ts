import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EffectFamily, EffectIntensity } from "../../db/effects";
import { buildEncodeArgs, detectZoomScaler, probeMedia, spawnFfmpeg, verifyOutput, type ZoomScaler } from "../../runner/ffmpeg";
import { deriveParams, type EffectParams } from "../../runner/params";
import { makeClip } from "../helpers/clips";

// Each family is checked on what comes out of FFmpeg (frames, durations, audio levels), not on its arguments.

const run = promisify(execFile);
const W = 160;
const H = 120;
let dir: string;
let clip: string;
/** White frame with a black 80×60 box at (40, 30): edges whose positions show zoom and rotation. */
let boxClip: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-effects-test-"));
  clip = await makeClip({ seconds: 2, width: W, height: H });
  boxClip = join(dir, "box.mp4");
  await run("ffmpeg", [
    "-v", "error", "-nostdin", "-y",
    "-f", "lavfi", "-i", `color=c=white:s=${W}x${H}:r=30:d=1,drawbox=x=40:y=30:w=80:h=60:color=black:t=fill`,
    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", boxClip,
  ]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Both ways a zoom is scaled back, where this FFmpeg has zscale (the runner picks it then: detectZoomScaler). */
const SCALERS: ZoomScaler[] = (await detectZoomScaler("ffmpeg")) === "zscale" ? ["scale", "zscale"] : ["scale"];

/** The first seed (from 1) whose parameters satisfy `want`: tests pick a draw that makes the effect measurable. */
function seedWhere(families: EffectFamily[], intensity: EffectIntensity, want: (p: EffectParams) => boolean): number {
  for (let seed = 1; seed < 100_000; seed++) if (want(deriveParams(seed, { intensity, families }))) return seed;
  throw new Error("no such seed");
}

/** Encodes like the runner: params from seed + effects, the runner's arguments, its output verification. */
async function encode(source: string, families: EffectFamily[], intensity: EffectIntensity, seed: number, scaler?: ZoomScaler) {
  const params = deriveParams(seed, { intensity, families });
  const media = await probeMedia("ffprobe", source);
  const output = join(dir, `out-${++n}.mp4`);
  const plan = buildEncodeArgs({ source, output, params, media, scaler });
  const proc = spawnFfmpeg("ffmpeg", plan.args);
  const exit = await proc.exited;
  expect(exit.code, proc.stderrTail()).toBe(0);
  await verifyOutput(output, plan.expectedDurationMs);
  return { output, params, plan };
}

/** The first frame as raw pixels (gray: 1 plane; yuv444p: Y, U, V planes), optionally through a filter. */
async function frame(path: string, pixFmt: "gray" | "yuv444p" = "gray", vf?: string): Promise<Buffer> {
  const { stdout } = await run(
    "ffmpeg",
    ["-v", "error", "-nostdin", "-i", path, ...(vf ? ["-vf", vf] : []), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", pixFmt, "-"],
    { encoding: "buffer", maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout;
}

const mean = (b: Buffer) => b.reduce((s, x) => s + x, 0) / b.length;
const meanAbsDiff = (a: Buffer, b: Buffer) => {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
};
/** Mean distance of the chroma planes from neutral grey (yuv444p): what eq's saturation scales. */
const chroma = (yuv: Buffer) => {
  const plane = yuv.length / 3;
  let s = 0;
  for (let i = plane; i < yuv.length; i++) s += Math.abs(yuv[i]! - 128);
  return s / (2 * plane);
};
const darkness = (gray: Buffer, x: number, y: number) => (255 - gray[y * W + x]!) / 255;
/** The box's width along row y (area of darkness: sub-pixel, robust to blurred edges). */
const rowWidth = (gray: Buffer, y: number) => Array.from({ length: W }, (_, x) => darkness(gray, x, y)).reduce((a, b) => a + b);
const colHeight = (gray: Buffer, x: number) => Array.from({ length: H }, (_, y) => darkness(gray, x, y)).reduce((a, b) => a + b);
/** Where the box's top edge crosses column x (first half-dark row, interpolated). */
function topEdge(gray: Buffer, x: number): number {
  for (let y = 1; y < H; y++) {
    const [a, b] = [darkness(gray, x, y - 1), darkness(gray, x, y)];
    if (a < 0.5 && b >= 0.5) return y - 1 + (0.5 - a) / (b - a);
  }
  throw new Error(`no edge in column ${x}`);
}

async function durations(path: string): Promise<{ video: number; audio: number }> {
  const { stdout } = await run("ffprobe", ["-v", "error", "-print_format", "json", "-show_streams", path]);
  const streams = (JSON.parse(stdout) as { streams: { codec_type: string; duration: string }[] }).streams;
  const ms = (type: string) => Number(streams.find((s) => s.codec_type === type)!.duration) * 1000;
  return { video: ms("video"), audio: ms("audio") };
}

async function meanVolumeDb(path: string): Promise<number> {
  const { stderr } = await run("ffmpeg", ["-nostdin", "-hide_banner", "-i", path, "-map", "0:a:0", "-af", "volumedetect", "-f", "null", "-"]);
  return Number(/mean_volume: (-?[\d.]+) dB/.exec(stderr)![1]);
}

describe("effect families on real FFmpeg output", () => {
  it("mirror: the output frame is the source frame flipped left to right", async () => {
    const { output } = await encode(clip, ["mirror"], "subtle", 1);
    const out = await frame(output);
    expect(meanAbsDiff(out, await frame(clip, "gray", "hflip"))).toBeLessThan(4);
    expect(meanAbsDiff(out, await frame(clip))).toBeGreaterThan(15);
  });

  it("color: brightness and saturation move the frame's mean luma and colourfulness", async () => {
    const seed = seedWhere(["color"], "strong", (p) => p.brightness >= 0.06 && p.saturation >= 1.1);
    const { output, params } = await encode(clip, ["color"], "strong", seed);
    expect(params).toMatchObject({ zoom: 0, mirror: false, speed: 1 });
    expect(mean(await frame(output))).toBeGreaterThan(mean(await frame(clip)) + 5);
    const ratio = chroma(await frame(output, "yuv444p")) / chroma(await frame(clip, "yuv444p"));
    expect(ratio).toBeGreaterThan(1 + (params.saturation - 1) * 0.6);
  });

  it("color: the recorded brightness is what the frames show (two subtle draws differ in luma by their recorded difference)", async () => {
    // FFmpeg's eq moves brightness in 1 % steps on its fast path, about a level dark: a recorded draw of −0.2 % came
    // out as −1.6 %. The recorded value is now the step's own (runner/eq.ts), so it must match the pixels.
    const near1 = (p: EffectParams) => Math.abs(p.contrast - 1) <= 0.002;
    const darker = seedWhere(["color"], "subtle", (p) => near1(p) && p.brightness <= -0.015);
    const lighter = seedWhere(["color"], "subtle", (p) => near1(p) && p.brightness >= 0.015);
    const a = await encode(clip, ["color"], "subtle", darker);
    const b = await encode(clip, ["color"], "subtle", lighter);
    // eq adds brightness × 255 to the (limited-range) luma; `frame` reads it back as full-range gray (× 255/219).
    const expected = (a.params.brightness - b.params.brightness) * 255 * (255 / 219);
    expect(expected).toBeLessThan(-7);
    const ratio = (mean(await frame(a.output)) - mean(await frame(b.output))) / expected;
    expect(ratio).toBeGreaterThan(0.9);
    expect(ratio).toBeLessThan(1.1);
  });

  it("speed: video and audio duration change by the speed factor", async () => {
    const seed = seedWhere(["speed"], "strong", (p) => p.speed >= 1.07);
    const { output, params } = await encode(clip, ["speed"], "strong", seed);
    const [out, src] = [await durations(output), await durations(clip)];
    // Audio to within about two AAC frames; video to within 3 frames (the 29.97 fps output grid on a 2 s clip).
    for (const [stream, slack] of [["audio", 50], ["video", 100]] as const) {
      expect(Math.abs(out[stream] - src[stream] / params.speed), stream).toBeLessThan(slack);
      expect(src[stream] - out[stream], stream).toBeGreaterThan(60);
    }
  });

  it("audio: the output's level differs from the source's by about the chosen gain", async () => {
    const seed = seedWhere(["audio"], "strong", (p) => p.volumeDb >= 3 && p.eqFreq >= 2500);
    const { output, params } = await encode(clip, ["audio"], "strong", seed);
    const change = (await meanVolumeDb(output)) - (await meanVolumeDb(clip));
    expect(Math.abs(change - params.volumeDb)).toBeLessThan(1);
    expect(change).toBeGreaterThan(2);
  });

  it("noise: grain moves the frame further from the source than a plain re-encode does", async () => {
    const seed = seedWhere(["noise"], "strong", (p) => p.noise >= 9);
    const noisy = await encode(clip, ["noise"], "strong", seed);
    // No family at all: the bare transcode with the same settings.
    const bare = await encode(clip, [], "strong", seed);
    const source = await frame(clip);
    expect(meanAbsDiff(await frame(noisy.output), source)).toBeGreaterThan(meanAbsDiff(await frame(bare.output), source) + 1.5);
  });

  it.each(SCALERS)("zoom (%s): the box grows by the crop's factor around the crop window", async (scaler) => {
    const seed = seedWhere(["zoom"], "strong", (p) => p.zoom >= 0.02);
    const { output, plan } = await encode(boxClip, ["zoom"], "strong", seed, scaler);
    expect(plan.args.join(" ")).toContain(`${scaler}=`);
    const src = await frame(boxClip);
    const out = await frame(output);
    const { cropW, cropH, cropX, cropY } = plan.geometry;
    expect(rowWidth(src, 60)).toBeCloseTo(80, 0);
    expect(Math.abs(rowWidth(out, 60) - (80 * W) / cropW)).toBeLessThan(0.8);
    expect(Math.abs(colHeight(out, 80) - (60 * H) / cropH)).toBeLessThan(0.8);
    expect(rowWidth(out, 60)).toBeGreaterThan(81);
    // Where the box sits: its centre (80, 60) seen through the crop window, so no scaler shifts the picture.
    const centre = (values: number[]) => values.reduce((s, v, i) => s + v * (i + 0.5), 0) / values.reduce((a, b) => a + b);
    const cx = centre(Array.from({ length: W }, (_, x) => darkness(out, x, 60)));
    const cy = centre(Array.from({ length: H }, (_, y) => darkness(out, 80, y)));
    expect(Math.abs(cx - ((80 - cropX) * W) / cropW)).toBeLessThan(0.5);
    expect(Math.abs(cy - ((60 - cropY) * H) / cropH)).toBeLessThan(0.5);
  });

  it.each(SCALERS)("zoom (%s): an RGB source and a full-range source come out limited-range yuv420p, as bright as the source", async (scaler) => {
    for (const [name, encoder] of [["rgb", ["-c:v", "libx264rgb"]], ["full-range", ["-pix_fmt", "yuvj420p", "-c:v", "libx264"]]] as const) {
      const source = join(dir, `${name}.mp4`);
      await run("ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", `testsrc2=s=${W}x${H}:r=30:d=1`, ...encoder, source]);
      const { output } = await encode(source, ["zoom"], "subtle", 1, scaler);
      const { stdout } = await run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=pix_fmt,color_range", "-of", "csv=p=0", output]);
      expect(stdout.trim(), `${name} source`).toMatch(/^yuv420p,(tv|unknown)$/);
      expect(Math.abs(mean(await frame(output)) - mean(await frame(source))), `${name} source`).toBeLessThan(1.5);
    }
  });

  it("rotate: the box's top edge tilts by the angle, and the corners stay picture (a zoom hides them) without choosing zoom", async () => {
    const seed = seedWhere(["rotate"], "strong", (p) => p.rotate >= 2);
    const { output, params, plan } = await encode(boxClip, ["rotate"], "strong", seed);
    expect(params.zoom).toBe(0);
    expect(plan.geometry.cropW).toBeLessThan(W);
    const out = await frame(output);
    const src = await frame(boxClip);
    expect(Math.abs(topEdge(src, 110) - topEdge(src, 50))).toBeLessThan(0.3);
    // Clockwise (FFmpeg's positive angle): the right end of the top edge goes down.
    const scale = W / plan.geometry.cropW;
    const tilt = (topEdge(out, 110) - topEdge(out, 50)) / 60;
    expect(tilt).toBeGreaterThan(0);
    expect(Math.abs(tilt - Math.tan((params.rotate * Math.PI) / 180))).toBeLessThan(0.02 * scale);
    // The background is white: a filled (black) corner would show here.
    for (const [x, y] of [[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]] as const) {
      expect(out[y * W + x], `corner ${x},${y}`).toBeGreaterThan(200);
    }
  });

  it("keeps the filter chain to the chosen families: no rotate, eq or crop for a mirror-only job", async () => {
    const media = await probeMedia("ffprobe", clip);
    const { args } = buildEncodeArgs({ source: clip, output: "o.mp4", params: deriveParams(5, { intensity: "strong", families: ["mirror"] }), media });
    const vf = args[args.indexOf("-vf") + 1]!;
    expect(vf).toBe("setsar=1,hflip,format=yuv420p");
    expect(args).not.toContain("-af");
  });
});
