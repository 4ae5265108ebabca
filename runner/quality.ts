import { execFile } from "node:child_process";
import { rename, rm, stat } from "node:fs/promises";
import { isAbortError, type EncodePlan } from "./ffmpeg";
import type { EffectParams } from "./params";

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
 * frame decoded); the source samples are the source's own keyframes where there is one near (shared cost).
 */

/** Fractions of the duration where frames are sampled (start and end avoided: fades, black frames). */
export const SAMPLE_FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9] as const;
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
  /** base64 of SAMPLE_FRACTIONS.length frames of FP_FRAME_BYTES (yuv420p). */
  fingerprint: string;
}

/**
 * Where the samples are, in source seconds: near each of SAMPLE_FRACTIONS of the duration, on the source's own
 * keyframe when one is within KEYFRAME_REACH of the duration (so reading the sample decodes one frame instead of a
 * whole GOP), else exactly there. Derived from the source file alone, so every runner picks the same times and
 * the fingerprints of siblings encoded anywhere compare the same moments.
 */
export function pickSampleTimes(durationMs: number, keyframesS: readonly number[]): number[] {
  const duration = durationMs / 1000;
  const reach = duration * KEYFRAME_REACH;
  const picked: number[] = [];
  for (const f of SAMPLE_FRACTIONS) {
    const target = duration * f;
    let best: number | null = null;
    for (const k of keyframesS) {
      if (Math.abs(k - target) <= reach && !picked.includes(Math.ceil(k * 1000) / 1000) && (best === null || Math.abs(k - target) < Math.abs(best - target))) best = k;
    }
    // A keyframe's time rounded up to the millisecond: a seek to just before it would start at the previous one.
    picked.push(best !== null ? Math.ceil(best * 1000) / 1000 : Math.floor(target * 1000) / 1000);
  }
  return picked.sort((a, b) => a - b);
}

/** How far (fraction of the duration) a sample may move to sit on a source keyframe. */
export const KEYFRAME_REACH = 0.1;

/** The sample times of an output: the source's, divided by the speed (the output plays `speed` times faster). */
export function outputTimes(sourceTimesS: readonly number[], speed: number): number[] {
  return sourceTimesS.map((t) => Math.floor((t / speed) * 1000) / 1000);
}

/** The encode's extra arguments: keyframes at the sample times, so measuring decodes one frame per sample. */
export function sampleKeyframes(sourceTimesS: readonly number[], speed: number): string[] {
  return ["-force_key_frames", outputTimes(sourceTimesS, speed).map((t) => t.toFixed(3)).join(",")];
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
 * The output's seeks: OUTPUT_SEEK_PAST_S past each sample time, but never past half the way to the next sample (an
 * output shorter than about a third of a second has its samples closer than that, and would read the next one's).
 */
export function outputSeeks(outputTimesS: readonly number[]): Seek[] {
  return outputTimesS.map((t, i) => {
    const next = outputTimesS[i + 1];
    return { t: t + (next === undefined ? OUTPUT_SEEK_PAST_S : Math.min(OUTPUT_SEEK_PAST_S, (next - t) / 2)), atKeyframe: true };
  });
}

/** Where one input starts: at the keyframe before `t` (the frame FFmpeg returns first) or exactly at `t`. */
export interface Seek {
  t: number;
  atKeyframe: boolean;
}

/**
 * One input per sample: seek, read at most `span` seconds (so FFmpeg stops decoding that input after the frame it
 * needs), one decoder thread (one frame each: threads only cost start-up), no audio.
 */
function seekInputs(file: string, seeks: readonly Seek[], spanS: number): string[] {
  return seeks.flatMap(({ t, atKeyframe }) => [
    // At a keyframe: no accurate seek, so the first frame out is that keyframe (in an open GOP too: the decoder
    // drops the leading frames that reference the GOP before). Not `-skip_frame nokey`: it also skips an open GOP's
    // non-IDR keyframes and lands seconds later.
    "-threads", "1", "-an", "-sn", "-dn", ...(atKeyframe ? ["-noaccurate_seek"] : []),
    "-ss", t.toFixed(3), "-t", spanS.toFixed(3), "-i", file,
  ]);
}

/** Which sample times sit on a source keyframe (pickSampleTimes rounds those up to the millisecond). */
export function onSourceKeyframe(timesS: readonly number[], keyframesS: readonly number[]): boolean[] {
  return timesS.map((t) => keyframesS.some((k) => Math.ceil(k * 1000) / 1000 === t));
}

/** [0:v]…[n-1:v] → one stream of n single frames, renumbered 0, 1, 2 … on a common time base. */
function framesOf(first: number, label: string): string[] {
  const n = SAMPLE_FRACTIONS.length;
  const ins = Array.from({ length: n }, (_, i) => `[${first + i}:v]trim=end_frame=1,setpts=PTS-STARTPTS[${label}${i}]`);
  const list = Array.from({ length: n }, (_, i) => `[${label}${i}]`).join("");
  return [...ins, `${list}concat=n=${n}:v=1:a=0,settb=1/25,setpts=N[${label}]`];
}

/**
 * The source's frames at the sample fractions, gray, at the source's display size, in a small NUT file: made once
 * per source on a runner and shared by every later variation of that source. A sample on a source keyframe is that
 * keyframe (one frame decoded; the output's forced keyframe shows the same moment); one with no keyframe near is
 * decoded from the previous keyframe to exactly its time. Pure: the arguments only.
 */
export function buildSourceSampleArgs(
  source: string,
  timesS: readonly number[],
  onKeyframe: readonly boolean[],
  fps: number,
  dest: string,
): string[] {
  const span = Math.max(0.2, 3 / (fps || 1));
  return [
    "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
    "-protocol_whitelist", "file",
    ...seekInputs(source, timesS.map((t, i) => ({ t, atKeyframe: onKeyframe[i] === true })), span),
    "-filter_complex", [...framesOf(0, "s"), "[s]format=gray[out]"].join(";"),
    "-map", "[out]", "-fps_mode", "passthrough", "-c:v", "rawvideo", "-f", "nut", dest,
  ];
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
    `[${n}:v]settb=1/25,setpts=N,${sourceAlign.join(",")},scale=${w}:${h}:flags=area,setsar=1,format=gray,split[sa][sb]`,
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

function ffmpegRun(ffmpeg: string, args: string[], signal?: AbortSignal): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      ffmpeg,
      args,
      { encoding: "buffer", timeout: 60_000, killSignal: "SIGKILL", signal, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderrBuf) => {
        const stderr = stderrBuf.toString("utf8");
        if (!err) return resolve({ stdout, stderr });
        if (isAbortError(err)) return reject(err);
        const line = stderr.split("\n").map((l) => l.trim()).filter(Boolean).pop() ?? err.message;
        reject(new Error(`quality measurement failed: ${line}`));
      },
    );
  });
}

/** The source as the measurement needs it. */
export interface SampledSource {
  path: string;
  durationMs: number;
  fps: number;
}

/** Keyframe times of the source's video (seconds from the start), from its packets: demuxing only, no decoding. */
export async function probeKeyframes(ffprobe: string, path: string, signal?: AbortSignal): Promise<number[]> {
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
    execFile(
      ffprobe,
      ["-v", "error", "-protocol_whitelist", "file", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags:format=start_time",
        "-of", "csv=p=0", path],
      { timeout: 60_000, killSignal: "SIGKILL", signal, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout) =>
        err
          ? reject(isAbortError(err) ? err : new Error(`quality measurement failed: keyframes: ${err.message}`))
          : resolve({ stdout }),
    );
  });
  const lines = stdout.trim().split("\n");
  // The format section comes last: one number (start_time).
  const start = Number(lines.findLast((l) => /^-?[0-9.]+$/.test(l.trim())) ?? 0) || 0;
  return lines.flatMap((l) => {
    const [t, flags] = l.split(",");
    return flags?.startsWith("K") && t && Number.isFinite(Number(t)) ? [Math.max(0, Number(t) - start)] : [];
  });
}

interface SourceProbe {
  times: number[];
  onKeyframe: boolean[];
}

interface SourceEntry {
  probe: Promise<SourceProbe>;
  file?: Promise<string>;
}

/** Per source file of this process: its sample times and its sample file (the oldest forgotten beyond 256). */
const sourceEntries = new Map<string, SourceEntry>();
const MAX_SOURCES = 256;

/**
 * The source's sample times in seconds (pickSampleTimes on its keyframes), once per source per runner process. The
 * probe is shared by the source's variations on this runner and runs under the first one's signal: when that one is
 * stopped, the others probe again under their own instead of losing their figures.
 */
export async function sourceSampleTimes(ffprobe: string, source: SampledSource, signal?: AbortSignal): Promise<number[]> {
  return (await probeSource(ffprobe, source, signal)).times;
}

async function probeSource(ffprobe: string, source: SampledSource, signal?: AbortSignal): Promise<SourceProbe> {
  for (;;) {
    try {
      return await sharedProbe(ffprobe, source, signal);
    } catch (err) {
      if (!isAbortError(err) || signal?.aborted) throw err;
    }
  }
}

function sharedProbe(ffprobe: string, source: SampledSource, signal?: AbortSignal): Promise<SourceProbe> {
  let e = sourceEntries.get(source.path);
  if (!e) {
    const probe = probeKeyframes(ffprobe, source.path, signal).then((k) => {
      const times = pickSampleTimes(source.durationMs, k);
      return { times, onKeyframe: onSourceKeyframe(times, k) };
    });
    e = { probe };
    sourceEntries.set(source.path, e);
    while (sourceEntries.size > MAX_SOURCES) sourceEntries.delete(sourceEntries.keys().next().value!);
    const mine = e;
    probe.catch(() => {
      if (sourceEntries.get(source.path) === mine) sourceEntries.delete(source.path);
    });
  }
  return e.probe;
}

/**
 * The source's sample file next to the source (`<source>.samples.nut`, removed with the job's directory), made
 * once per source per runner process; a failure is not cached.
 */
export async function sourceSamples(ffmpeg: string, ffprobe: string, source: SampledSource, signal?: AbortSignal): Promise<string> {
  const { times, onKeyframe } = await probeSource(ffprobe, source, signal);
  let e = sourceEntries.get(source.path);
  while (e?.file) {
    const made = e.file;
    // The job's directory (and the file with it) is removed when the runner has nothing left of the job; a job
    // reopened later (more variations, retry) downloads its source again and needs its samples again.
    const path = await made.catch(() => null);
    if (path && (await stat(path).then(() => true, () => false))) return path;
    signal?.throwIfAborted();
    // Several variations may have waited on the one that failed (its own stop aborts it): the first to get here
    // makes it again and the others wait on that one, instead of each starting an FFmpeg of its own.
    if (e.file === made) delete e.file;
    e = sourceEntries.get(source.path);
  }
  const dest = `${source.path}.samples.nut`;
  // Its own temporary name: a failed run's cleanup must never remove the file of the run that replaced it.
  const tmp = `${dest}.${process.pid}.${++samplesRuns}.part`;
  const file = ffmpegRun(ffmpeg, buildSourceSampleArgs(source.path, times, onKeyframe, source.fps, tmp), signal).then(async () => {
    await rename(tmp, dest);
    return dest;
  });
  const mine = e;
  if (mine) mine.file = file;
  file.catch(() => {
    if (mine?.file === file) delete mine.file;
    void rm(tmp, { force: true }).catch(() => {});
  });
  return file;
}

let samplesRuns = 0;

/** Forget a source (its file is being removed): the next measurement probes and samples it again. */
export function forgetSource(sourcePath: string): void {
  sourceEntries.delete(sourcePath);
}

/** Measures one output against its source (see the top of this file). Writes the thumbnail to `thumbnail`. */
export async function measureQuality(
  bins: { ffmpeg: string; ffprobe: string },
  input: Omit<Parameters<typeof buildMeasureArgs>[0], "sourceSamples" | "outputTimesS"> & { source: SampledSource; speed: number },
  signal?: AbortSignal,
): Promise<QualityFigures> {
  const samples = await sourceSamples(bins.ffmpeg, bins.ffprobe, input.source, signal);
  const outputTimesS = outputTimes(await sourceSampleTimes(bins.ffprobe, input.source, signal), input.speed);
  const { stdout, stderr } = await ffmpegRun(bins.ffmpeg, buildMeasureArgs({ ...input, sourceSamples: samples, outputTimesS }), signal);
  const expected = SAMPLE_FRACTIONS.length * FP_FRAME_BYTES;
  if (stdout.length !== expected) throw new Error(`quality measurement gave ${stdout.length} fingerprint bytes, expected ${expected}`);
  return { ...parseSummaries(stderr), fingerprint: stdout.toString("base64") };
}

/**
 * Distinctness of two fingerprints: mean absolute pixel difference in percent of the 8-bit range (0–100), or null
 * when they are not comparable (other sizes: a fingerprint of an older format, such as the gray ones of before).
 */
export function fingerprintDistance(a: string, b: string): number | null {
  const x = Buffer.from(a, "base64");
  const y = Buffer.from(b, "base64");
  if (x.length === 0 || x.length !== y.length) return null;
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
