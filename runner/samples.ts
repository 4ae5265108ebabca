import { execFile } from "node:child_process";
import { lstat, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isAbortError, untilAborted } from "./abort";
import { childCommand, childLaunch, withChild } from "./child-env";
import { FFMPEG_OUT } from "./workdir";

/**
 * Where the quality measurement (runner/quality.ts) samples a source, and the source's frames there.
 *
 * The times are fixed fractions of the duration, so every runner picks the same ones and siblings' fingerprints
 * compare the same moments. The encode forces an output keyframe at each (`sampleKeyframes`), so reading an output
 * sample decodes one frame. The source's frames at those times come out of the encode's own decode of the source
 * (`encodeSampleChain`): picking five frames from a decode that happens anyway costs next to nothing. Earlier a
 * separate FFmpeg sought to each of them (decoding up to a GOP per sample, and landing on other frames in a file
 * without an index, such as MPEG-TS), and the times were moved onto the source's keyframes (an ffprobe of every
 * packet per source) to keep those seeks short; neither is needed now. A decode of its own with the same chain
 * (`buildSourceSampleArgs`) is the fallback for a sample file the encode did not complete.
 */

/** Fractions of the duration where frames are sampled (start and end avoided: fades, black frames). */
export const SAMPLE_FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9] as const;

/** The source's sample times in seconds, to the millisecond: derived from the duration alone. */
export function sampleTimes(durationMs: number): number[] {
  return SAMPLE_FRACTIONS.map((f) => Math.floor(durationMs * f) / 1000);
}

/** The sample times of an output: the source's, divided by the speed (the output plays `speed` times faster). */
export function outputTimes(sourceTimesS: readonly number[], speed: number): number[] {
  return sourceTimesS.map((t) => Math.floor((t / speed) * 1000) / 1000);
}

/** The encode's extra arguments: keyframes at the sample times, so measuring decodes one frame per sample. */
export function sampleKeyframes(sourceTimesS: readonly number[], speed: number): string[] {
  return ["-force_key_frames", outputTimes(sourceTimesS, speed).map((t) => t.toFixed(3)).join(",")];
}

/**
 * The filter chain that picks the source's samples out of a full decode of it, as the encode's second output. For
 * each time the frame nearest to it: what the 29.97 fps output shows at its forced keyframe there. Gray at the source's display size, numbered 0, 1, 2 … on a 1/25 time base, after one
 * leading frame (the source's first) that only opens the file: FFmpeg 5.1 reports no progress until every output has
 * written its header, which a NUT file does with its first frame, so without it the encode would report nothing
 * until 10 % of the source — long enough, on a long source, for the stall watchdog. SAMPLES_SKIP says how many to
 * skip.
 */
export function encodeSampleChain(timesS: readonly number[], fps: number): string {
  // From half a frame before, that one excluded: of two frames equally near, the later, as the output's keyframe
  // lands at or after the time. A microsecond decides the tie, far above a float's noise and far below a frame.
  const half = fps > 0 ? 0.5 / fps : 0;
  const at = (t: number) => Math.max(0, t - half + 0.000001).toFixed(6);
  const terms = timesS.map((t) => `gte(t\\,${at(t)})*not(gte(prev_t\\,${at(t)}))`);
  // `scale` before `format`: the branch converts on its own. Without it FFmpeg's format negotiation carried gray up
  // through `split` into the encode's own chain whenever a filter before the split (the rotation FFmpeg inserts for a
  // portrait phone video) accepted gray: those encodes came out without colour.
  return `select=eq(n\\,0)+${terms.join("+")},scale,format=gray,settb=1/25,setpts=N`;
}

/** Leading frames of a sample file that are not samples (see encodeSampleChain). */
export const SAMPLES_SKIP = 1;

/** A sample file the encode writes (its own temporary name), taken as the source's once the encode is verified. */
export interface EncodeSamples {
  chain: string;
  file: string;
}

/**
 * The samples output for this encode, or null when the source's sample file is already in place on this runner.
 * Every encode of a source without one writes its own (two at once both do: it costs next to nothing, and either
 * stands in for the other when one is stopped); the first verified one is kept (`keepEncodeSamples`).
 */
export async function encodeSamples(source: SampledSource): Promise<EncodeSamples | null> {
  if (await exists(samplesFile(source.path))) return null;
  return { chain: encodeSampleChain(sampleTimes(source.durationMs), source.fps), file: `${samplesFile(source.path)}.${process.pid}.${++samplesRuns}.part` };
}

/**
 * After the encode that wrote `samples` verified: its file becomes the source's sample file when it holds exactly the
 * frames it should (SAMPLES_SKIP + one per sample, width × height gray bytes each, plus less than a frame of
 * container). Otherwise it is dropped and the measurement's fallback makes them.
 */
export async function keepEncodeSamples(samples: EncodeSamples, source: SampledSource & { width: number; height: number }): Promise<boolean> {
  const size = await stat(samples.file).then((s) => s.size, () => 0);
  const frames = SAMPLES_SKIP + SAMPLE_FRACTIONS.length;
  const frame = source.width * source.height;
  if (size < frames * frame || size >= (frames + 1) * frame) {
    await rm(samples.file, { force: true });
    return false;
  }
  await rename(samples.file, samplesFile(source.path));
  return true;
}

/**
 * The source's sample file, in the `out/` beside the source: FFmpeg makes it, and it stays where FFmpeg writes (a
 * rename into the job's directory would let FFMPEG_USER put a directory or symlink of its own where the runner, as
 * root, walks). The source cache removes (and counts) it with the source.
 */
export const samplesFile = (sourcePath: string) => join(dirname(sourcePath), FFMPEG_OUT, `${basename(sourcePath)}.samples.nut`);
/** Numbers the temporary sample files of this process: a failed run's cleanup never removes another run's file. */
let samplesRuns = 0;
/**
 * The source's sample file is in place: a regular file the runner put there. It lives in `out/`, where every run of
 * FFMPEG_USER may create names, and the runner only ever renames a sealed (root's) file to it: anything else at
 * that name another run made, to steer this source's measurements, and it is removed.
 */
async function exists(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  if (!st) return false;
  if (!childLaunch().user || (st.isFile() && st.uid === (process.getuid?.() ?? 0) && st.nlink === 1)) return true;
  await unlink(path).catch(() => {});
  return false;
}

/**
 * The fallback, when no encode left a complete sample file: the same chain on a decode of its own (the whole source,
 * so that the frames are the encode's own; seeking for them instead got MPEG-TS wrong). Pure: the arguments only.
 */
export function buildSourceSampleArgs(source: string, timesS: readonly number[], fps: number, dest: string): string[] {
  return [
    "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
    "-protocol_whitelist", "file",
    "-an", "-sn", "-dn", "-i", source,
    "-map", "0:v:0", "-vf", encodeSampleChain(timesS, fps),
    "-fps_mode", "passthrough", "-c:v", "rawvideo", "-f", "nut", dest,
  ];
}

export function ffmpegRun(
  ffmpeg: string,
  args: string[],
  signal?: AbortSignal,
  timeoutMs = 60_000,
  writes: string[] = [],
): Promise<{ stdout: Buffer; stderr: string }> {
  return withChild(signal, (lease) => new Promise((resolve, reject) => {
    const cmd = childCommand(ffmpeg, args, lease);
    execFile(
      cmd.file,
      cmd.args,
      { encoding: "buffer", timeout: timeoutMs, killSignal: "SIGKILL", signal, maxBuffer: 4 * 1024 * 1024, env: cmd.env },
      (err, stdout, stderrBuf) => {
        const stderr = stderrBuf.toString("utf8");
        if (!err) return resolve({ stdout, stderr });
        if (isAbortError(err)) return reject(err);
        const line = stderr.split("\n").map((l) => l.trim()).filter(Boolean).pop() ?? err.message;
        reject(new Error(`quality measurement failed: ${line}`));
      },
    );
  }), writes);
}

/** The source as the measurement needs it. */
export interface SampledSource {
  path: string;
  durationMs: number;
  fps: number;
}

/** Per source file of this process: the fallback's sample file being made (the oldest forgotten beyond 256). */
const making = new Map<string, Promise<string>>();
const MAX_SOURCES = 256;

/**
 * The source's sample file in the job's `out/` (`<source>.samples.nut`, removed with the job's directory): the one an
 * encode made, else made by the fallback, once per source per runner process (a failure is not cached).
 */
export async function sourceSamples(ffmpeg: string, source: SampledSource, signal?: AbortSignal): Promise<string> {
  const dest = samplesFile(source.path);
  for (;;) {
    // Normally an encode of the source made them (keepEncodeSamples). The job's directory (and the file with it) is
    // removed when the runner has nothing left of the job; a job reopened later needs its samples again.
    if (await exists(dest)) return dest;
    const made = making.get(source.path);
    if (!made) break;
    try {
      const path = await untilAborted(made, signal);
      if (await exists(path)) return path;
    } catch (err) {
      // A failure of the file itself is everybody's: not made again for each waiter. A stop is only the maker's:
      // the first waiter to get here makes it again and the others wait on that one.
      if (!isAbortError(err) || signal?.aborted) throw err;
    }
    if (making.get(source.path) === made) making.delete(source.path);
  }
  // Its own temporary name: a failed run's cleanup must never remove the file of the run that replaced it.
  const tmp = `${dest}.${process.pid}.${++samplesRuns}.part`;
  const args = buildSourceSampleArgs(source.path, sampleTimes(source.durationMs), source.fps, tmp);
  // A whole decode: a minute, or twice the source's duration when that is longer (a slow core, a large frame).
  const file = ffmpegRun(ffmpeg, args, signal, Math.max(60_000, 2 * source.durationMs), [tmp]).then(async () => {
    await rename(tmp, dest);
    return dest;
  });
  making.set(source.path, file);
  while (making.size > MAX_SOURCES) making.delete(making.keys().next().value!);
  const forget = () => making.get(source.path) === file && making.delete(source.path);
  void file.then(
    // Made: the file itself answers the next caller.
    forget,
    (err: unknown) => {
      void rm(tmp, { force: true }).catch(() => {});
      // Failed: those waiting now get the error, a later caller tries again (not cached). Stopped: left for a
      // waiter to replace, so that the waiters make it once between them.
      if (!isAbortError(err)) forget();
    },
  );
  return file;
}
