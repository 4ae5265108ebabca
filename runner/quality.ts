import type { EncodePlan } from "./ffmpeg";
import type { EffectParams } from "./params";
import { ffmpegRun, outputTimes, SAMPLE_FRACTIONS, SAMPLES_SKIP, sampleTimes, sourceSamples, type SampledSource } from "./samples";

/**
 * Quality of one encoded variation, measured on a few sampled frames (one FFmpeg call, no full decode):
 *
 * - **SSIM / PSNR against the source.** "Against the source" means: the frame the viewer sees at the same point of
 *   the video, with the deliberate geometry lined up. Samples are taken at fixed *fractions* of each file's
 *   duration, so a speed change (output duration = source ÷ speed) compares the same content. The source frame
 *   goes through the variation's own rotation and crop window (recorded geometry), and a mirrored output is
 *   flipped back, so the comparison sees what the effects and the encode did to the pixels (colour, grain, zoom
 *   resampling, compression), not a 2 % offset of every edge that nobody perceives as damage. Both are then scaled
 *   to the same small gray frame (SAMPLE_WIDTH wide, the source's aspect): SSIM on luma at a size where it is cheap.
 * - **A fingerprint** of the output as delivered: the same sampled frames at FP_SIZE × FP_SIZE in colour (YUV 4:2:0:
 *   the luma plane and two quarter-size chroma planes), stored with the variation (base64 in
 *   `variations.fingerprint`), so a sibling encoded by any other runner on any other host can compute its
 *   distinctness from the database alone, without downloading outputs. Colour, not gray: two draws that differ
 *   only in saturation or hue look different to a person, and a gray fingerprint measured them as identical.
 * - **Distinctness**: the mean absolute difference of two fingerprints over all their bytes (so luma weighs two
 *   thirds, chroma one third), in percent of the 8-bit range (0 = the same pixels). Why not a perceptual hash:
 *   these variations are meant to look the same to a person, and a perceptual hash is built to ignore exactly the
 *   changes they are made of (a 0.5 % zoom, ±3 % brightness), so most siblings would hash identically; the pixel
 *   difference of small frames still sees them.
 * - **A thumbnail** of the output (JPEG, THUMB_WIDTH wide) from the middle sample.
 *
 * The encode puts a keyframe at every sample time (`sampleKeyframes`), so each output sample is that keyframe (one
 * frame decoded); the source's frames at the same moments come out of the encode's own decode (runner/samples.ts).
 */

/** Width of the frames SSIM/PSNR compare. */
export const SAMPLE_WIDTH = 256;
/** Side of each fingerprint frame (even: the chroma planes are half of it each way). */
export const FP_SIZE = 24;
/** Bytes of one fingerprint frame: a FP_SIZE² luma plane and two (FP_SIZE/2)² chroma planes (yuv420p). */
export const FP_FRAME_BYTES = FP_SIZE * FP_SIZE + 2 * (FP_SIZE / 2) * (FP_SIZE / 2);
export const THUMB_WIDTH = 320;
/** PSNR of identical frames is infinite; recorded as this. */
export const PSNR_CAP = 100;

export interface QualityFigures {
  ssim: number;
  psnr: number;
  /** base64 of FP_VERSION, then SAMPLE_FRACTIONS.length frames of FP_FRAME_BYTES (yuv420p). */
  fingerprint: string;
}

const even = (n: number) => Math.max(2, 2 * Math.round(n / 2));

/**
 * How far past a sample time the output is sought: 1.5 frames of the 29.97 fps output. The keyframe forced at the
 * time lands on the output's frame grid within a frame of it, either side, so it is the last keyframe before this
 * point, and a seek without `accurate_seek` starts decoding at it and returns it: one frame decoded per sample.
 * (An accurate seek 10 ms past the time missed a keyframe that landed just after it, and decoded the output's whole
 * previous GOP — up to 250 frames — to reach the sample.)
 */
export const OUTPUT_SEEK_PAST_S = 0.05;

/**
 * The output's seek points: OUTPUT_SEEK_PAST_S past each sample time, but never past half the way to the next sample
 * (an output shorter than about a third of a second has its samples closer than that, and would read the next one's).
 */
export function outputSeeks(outputTimesS: readonly number[]): number[] {
  return outputTimesS.map((t, i) => {
    const next = outputTimesS[i + 1];
    return t + (next === undefined ? OUTPUT_SEEK_PAST_S : Math.min(OUTPUT_SEEK_PAST_S, (next - t) / 2));
  });
}

/**
 * One input per sample, each sought without accurate seeking, so the first frame out is the keyframe before the seek
 * point: the sample's own forced keyframe. Read at most `span` seconds (FFmpeg stops decoding that input after the
 * frame it needs), one decoder thread (one frame each: threads only cost start-up), no audio.
 */
function seekInputs(file: string, seeks: readonly number[], spanS: number): string[] {
  return seeks.flatMap((t) => [
    "-threads", "1", "-an", "-sn", "-dn", "-noaccurate_seek",
    "-ss", t.toFixed(3), "-t", spanS.toFixed(3), "-i", file,
  ]);
}

/** [0:v]…[n-1:v] → one stream of n single frames, renumbered 0, 1, 2 … on a common time base. */
function framesOf(first: number, label: string): string[] {
  const n = SAMPLE_FRACTIONS.length;
  const ins = Array.from({ length: n }, (_, i) => `[${first + i}:v]trim=end_frame=1,setpts=PTS-STARTPTS[${label}${i}]`);
  const list = Array.from({ length: n }, (_, i) => `[${label}${i}]`).join("");
  return [...ins, `${list}concat=n=${n}:v=1:a=0,settb=1/25,setpts=N[${label}]`];
}

/**
 * The FFmpeg arguments of one measurement (pure). Inputs: the output seeked to each sample (keyframes there), then
 * the source's sample file. Outputs: SSIM and PSNR summaries on stderr, the fingerprint frames on stdout, the JPEG.
 */
export function buildMeasureArgs(input: {
  sourceSamples: string;
  output: string;
  thumbnail: string;
  /** Output times of the samples (outputTimes). */
  outputTimesS: readonly number[];
  params: Pick<EffectParams, "mirror" | "rotate">;
  geometry: EncodePlan["geometry"];
}): string[] {
  const { params: p, geometry: g } = input;
  const n = SAMPLE_FRACTIONS.length;
  const w = SAMPLE_WIDTH;
  const h = even((SAMPLE_WIDTH * g.height) / g.width);
  // The variation's own geometry on the source frames: the same rotation, then the same crop window.
  const sourceAlign = [
    ...(p.rotate ? [`rotate=${((p.rotate * Math.PI) / 180).toFixed(6)}:fillcolor=black`] : []),
    `crop=${g.cropW}:${g.cropH}:${g.cropX}:${g.cropY}`,
  ];
  const graph = [
    ...framesOf(0, "o"),
    `[o]split=3[oq][of][ot]`,
    `[${n}:v]trim=start_frame=${SAMPLES_SKIP},settb=1/25,setpts=N,${sourceAlign.join(",")},scale=${w}:${h}:flags=area,setsar=1,format=gray,split[sa][sb]`,
    `[oq]${p.mirror ? "hflip," : ""}scale=${w}:${h}:flags=area,setsar=1,format=gray,split[oa][ob]`,
    `[oa][sa]ssim[q1]`,
    `[ob][sb]psnr[q2]`,
    `[of]scale=${FP_SIZE}:${FP_SIZE}:flags=area,format=yuv420p[fp]`,
    `[ot]select=eq(n\\,${Math.floor(n / 2)}),scale=${THUMB_WIDTH}:-2,setsar=1[th]`,
  ].join(";");
  return [
    "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-y",
    "-protocol_whitelist", "file",
    ...seekInputs(input.output, outputSeeks(input.outputTimesS), 0.2),
    "-threads", "1", "-i", input.sourceSamples,
    "-filter_complex", graph,
    // passthrough: the samples are frames, not a video at some rate; nothing may be duplicated or dropped.
    "-map", "[q1]", "-fps_mode", "passthrough", "-f", "null", "-",
    "-map", "[q2]", "-fps_mode", "passthrough", "-f", "null", "-",
    "-map", "[th]", "-frames:v", "1", "-q:v", "4", "-f", "image2", input.thumbnail,
    "-map", "[fp]", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1",
  ];
}

/** SSIM "All" and PSNR "average" from FFmpeg's summary lines. */
export function parseSummaries(stderr: string): { ssim: number; psnr: number } {
  const ssim = /SSIM [^\n]*All:([0-9.]+)/.exec(stderr)?.[1];
  const psnr = /PSNR [^\n]*average:([0-9.]+|inf)/.exec(stderr)?.[1];
  if (!ssim || !psnr) throw new Error("quality measurement printed no SSIM/PSNR summary");
  return { ssim: Number(ssim), psnr: psnr === "inf" ? PSNR_CAP : Math.min(PSNR_CAP, Number(psnr)) };
}


/**
 * Version of the fingerprint format, its first byte. 2: frames at the exact sample fractions. Fingerprints of
 * another format compare other moments or other pixels and are not comparable: the yuv420p ones of before had no
 * version byte (their frames sat on source keyframes near the fractions), the first ones were gray.
 */
export const FP_VERSION = 2;

/** Measures one output against its source (see the top of this file). Writes the thumbnail to `thumbnail`. */
export async function measureQuality(
  ffmpeg: string,
  input: Omit<Parameters<typeof buildMeasureArgs>[0], "sourceSamples" | "outputTimesS"> & { source: SampledSource; speed: number },
  signal?: AbortSignal,
): Promise<QualityFigures> {
  const samples = await sourceSamples(ffmpeg, input.source, signal);
  const outputTimesS = outputTimes(sampleTimes(input.source.durationMs), input.speed);
  const { stdout, stderr } = await ffmpegRun(ffmpeg, buildMeasureArgs({ ...input, sourceSamples: samples, outputTimesS }), signal, undefined, [input.thumbnail]);
  const expected = SAMPLE_FRACTIONS.length * FP_FRAME_BYTES;
  if (stdout.length !== expected) throw new Error(`quality measurement gave ${stdout.length} fingerprint bytes, expected ${expected}`);
  return { ...parseSummaries(stderr), fingerprint: Buffer.concat([Buffer.from([FP_VERSION]), stdout]).toString("base64") };
}

/** A fingerprint's frames, or null when it is not of this format (see FP_VERSION). */
function fingerprintFrames(fingerprint: string): Buffer | null {
  const b = Buffer.from(fingerprint, "base64");
  return b.length === 1 + SAMPLE_FRACTIONS.length * FP_FRAME_BYTES && b[0] === FP_VERSION ? b.subarray(1) : null;
}

/**
 * Distinctness of two fingerprints: mean absolute pixel difference in percent of the 8-bit range (0–100), or null
 * when they are not comparable (either is of an older format).
 */
export function fingerprintDistance(a: string, b: string): number | null {
  const x = fingerprintFrames(a);
  const y = fingerprintFrames(b);
  if (!x || !y) return null;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.abs(x[i]! - y[i]!);
  return Math.round((sum / x.length / 255) * 100 * 1000) / 1000;
}

/** The smallest distance to any of `siblings` (the closest sibling decides), or null without comparable ones. */
export function closestDistance(fingerprint: string, siblings: readonly string[]): number | null {
  let best: number | null = null;
  for (const s of siblings) {
    const d = fingerprintDistance(fingerprint, s);
    if (d !== null && (best === null || d < best)) best = d;
  }
  return best;
}
