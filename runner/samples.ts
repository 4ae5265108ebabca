import { execFile } from "node:child_process";
import { rename, rm, stat } from "node:fs/promises";
import { isAbortError } from "./ffmpeg";

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
 * The filter chain that picks the source's samples out of a full decode of it, as the encode's second output: for
 * each time the first frame at or after it (what an accurate seek returns on an indexed file such as MP4; on one
 * whose seeks are approximate, such as MPEG-TS, only a decode gets them right). Gray at the source's display size,
 * numbered 0, 1, 2 … on a 1/25 time base.
 */
export function encodeSampleChain(timesS: readonly number[]): string {
  // The times are whole milliseconds; a frame's time is a float: a few microseconds of slack.
  const at = (t: number) => (t - 0.00001).toFixed(6);
  const terms = timesS.map((t) => `gte(t\\,${at(t)})*not(gte(prev_t\\,${at(t)}))`);
  return `select=${terms.join("+")},format=gray,settb=1/25,setpts=N`;
}

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
  return { chain: encodeSampleChain(sampleTimes(source.durationMs)), file: `${samplesFile(source.path)}.${process.pid}.${++samplesRuns}.part` };
}

/**
 * After the encode that wrote `samples` verified: its file becomes the source's sample file, when it holds every
 * sample (a frame of width × height gray bytes each). Otherwise it is dropped and the measurement seeks for them.
 */
export async function keepEncodeSamples(samples: EncodeSamples, source: SampledSource & { width: number; height: number }): Promise<boolean> {
  const size = await stat(samples.file).then((s) => s.size, () => 0);
  if (size < SAMPLE_FRACTIONS.length * source.width * source.height) {
    await rm(samples.file, { force: true });
    return false;
  }
  await rename(samples.file, samplesFile(source.path));
  return true;
}

const samplesFile = (sourcePath: string) => `${sourcePath}.samples.nut`;
/** Numbers the temporary sample files of this process: a failed run's cleanup never removes another run's file. */
let samplesRuns = 0;
const exists = (path: string) => stat(path).then(() => true, () => false);

/**
 * The fallback, when no encode left a complete sample file: the same chain on a decode of its own (the whole source,
 * so that the frames are the encode's own; seeking for them instead got MPEG-TS wrong). Pure: the arguments only.
 */
export function buildSourceSampleArgs(source: string, timesS: readonly number[], dest: string): string[] {
  return [
    "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
    "-protocol_whitelist", "file",
    "-an", "-sn", "-dn", "-i", source,
    "-map", "0:v:0", "-vf", encodeSampleChain(timesS),
    "-fps_mode", "passthrough", "-c:v", "rawvideo", "-f", "nut", dest,
  ];
}

export function ffmpegRun(
  ffmpeg: string,
  args: string[],
  signal?: AbortSignal,
  timeoutMs = 60_000,
): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      ffmpeg,
      args,
      { encoding: "buffer", timeout: timeoutMs, killSignal: "SIGKILL", signal, maxBuffer: 4 * 1024 * 1024 },
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

/** Per source file of this process: the fallback's sample file being made (the oldest forgotten beyond 256). */
const making = new Map<string, Promise<string>>();
const MAX_SOURCES = 256;

/**
 * The source's sample file next to the source (`<source>.samples.nut`, removed with the job's directory): the one an
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
    // Several variations may have waited on one that failed (its own stop aborts it): the first to get here makes
    // it again and the others wait on that one, instead of each starting an FFmpeg of its own.
    const path = await made.catch(() => null);
    if (path && (await exists(path))) return path;
    signal?.throwIfAborted();
    if (making.get(source.path) === made) making.delete(source.path);
  }
  // Its own temporary name: a failed run's cleanup must never remove the file of the run that replaced it.
  const tmp = `${dest}.${process.pid}.${++samplesRuns}.part`;
  const args = buildSourceSampleArgs(source.path, sampleTimes(source.durationMs), tmp);
  // A whole decode: a minute, or twice the source's duration when that is longer (a slow core, a large frame).
  const file = ffmpegRun(ffmpeg, args, signal, Math.max(60_000, 2 * source.durationMs)).then(async () => {
    await rename(tmp, dest);
    return dest;
  });
  making.set(source.path, file);
  while (making.size > MAX_SOURCES) making.delete(making.keys().next().value!);
  file.catch(() => void rm(tmp, { force: true }).catch(() => {}));
  // Once settled it has nothing left to share: the file itself (or its absence) answers the next caller.
  void file.then(
    () => making.get(source.path) === file && making.delete(source.path),
    () => {},
  );
  return file;
}
