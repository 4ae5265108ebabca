import { execFile } from "node:child_process";
import { rename, rm, stat } from "node:fs/promises";
import { isAbortError } from "./ffmpeg";

/**
 * Where the quality measurement (runner/quality.ts) samples a source, and the source's sample frames.
 *
 * The times are near fixed fractions of the duration, moved onto a source keyframe when one is near, derived from the
 * source file alone so that every runner picks the same ones (siblings' fingerprints compare the same moments). The
 * encode forces an output keyframe at each (`sampleKeyframes`), so reading an output sample decodes one frame. The
 * source's frames at those times come out of the encode's own decode of the source (`encodeSampleChain`): picking
 * five frames from a decode that happens anyway costs next to nothing, where seeking to them afterwards decoded up
 * to a whole GOP per sample (1.3 s of CPU for one sample of a 1080×1920 source with 8 s GOPs). Seeking
 * (`buildSourceSampleArgs`) remains the fallback.
 */

/** Fractions of the duration where frames are sampled (start and end avoided: fades, black frames). */
export const SAMPLE_FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9] as const;

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
/** Where one input starts: at the keyframe before `t` (the frame FFmpeg returns first) or exactly at `t`. */
export interface Seek {
  t: number;
  atKeyframe: boolean;
}

/**
 * One input per sample: seek, read at most `span` seconds (so FFmpeg stops decoding that input after the frame it
 * needs), one decoder thread (one frame each: threads only cost start-up), no audio.
 */
export function seekInputs(file: string, seeks: readonly Seek[], spanS: number): string[] {
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

/**
 * The filter chain that picks the source's samples out of a full decode of it, as the encode's second output:
 * a sample on a source keyframe is the frame at that keyframe (pickSampleTimes rounded its time up to the
 * millisecond), any other the first frame at or after its time — the frames buildSourceSampleArgs' seeks return
 * on an indexed file (MP4, MOV, MKV); on one whose seeks are approximate (MPEG-TS) only this gets them right. Gray at
 * the source's display size, numbered 0, 1, 2 … like the seeks' file, so the measurement reads either.
 */
export function encodeSampleChain(timesS: readonly number[], onKeyframe: readonly boolean[]): string {
  // Timestamps went through decimal printing (ffprobe) and float arithmetic: a few microseconds of slack either way.
  const e = 0.00001;
  const at = (x: number) => x.toFixed(6);
  const terms = timesS.map((t, i) =>
    onKeyframe[i] ? `between(t\\,${at(t - 0.001 - e)}\\,${at(t + e)})` : `gte(t\\,${at(t - e)})*not(gte(prev_t\\,${at(t - e)}))`,
  );
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
export async function encodeSamples(ffprobe: string, source: SampledSource, signal?: AbortSignal): Promise<EncodeSamples | null> {
  if (await exists(samplesFile(source.path))) return null;
  const { times, onKeyframe } = await probeSource(ffprobe, source, signal);
  return { chain: encodeSampleChain(times, onKeyframe), file: `${samplesFile(source.path)}.${process.pid}.${++samplesRuns}.part` };
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

/** [0:v]…[n-1:v] → one stream of n single frames, renumbered 0, 1, 2 … on a common time base. */
export function framesOf(first: number, label: string): string[] {
  const n = SAMPLE_FRACTIONS.length;
  const ins = Array.from({ length: n }, (_, i) => `[${first + i}:v]trim=end_frame=1,setpts=PTS-STARTPTS[${label}${i}]`);
  const list = Array.from({ length: n }, (_, i) => `[${label}${i}]`).join("");
  return [...ins, `${list}concat=n=${n}:v=1:a=0,settb=1/25,setpts=N[${label}]`];
}

/**
 * The source's frames at the sample fractions, gray, at the source's display size, in a small NUT file, by seeking:
 * the fallback when no encode picked them out of its decode (encodeSampleChain). A sample on a source keyframe is that
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
export function ffmpegRun(ffmpeg: string, args: string[], signal?: AbortSignal): Promise<{ stdout: Buffer; stderr: string }> {
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
 * The source's sample file next to the source (`<source>.samples.nut`, removed with the job's directory): the one an
 * encode made, else made by seeking, once per source per runner process (a failure is not cached).
 */
export async function sourceSamples(ffmpeg: string, ffprobe: string, source: SampledSource, signal?: AbortSignal): Promise<string> {
  // Normally an encode of the source made them (keepEncodeSamples); seeking for them is the fallback.
  if (await exists(samplesFile(source.path))) return samplesFile(source.path);
  const { times, onKeyframe } = await probeSource(ffprobe, source, signal);
  let e = sourceEntries.get(source.path);
  while (e?.file) {
    const made = e.file;
    // The job's directory (and the file with it) is removed when the runner has nothing left of the job; a job
    // reopened later (more variations, retry) downloads its source again and needs its samples again.
    const path = await made.catch(() => null);
    if (path && (await exists(path))) return path;
    signal?.throwIfAborted();
    // Several variations may have waited on the one that failed (its own stop aborts it): the first to get here
    // makes it again and the others wait on that one, instead of each starting an FFmpeg of its own.
    if (e.file === made) delete e.file;
    e = sourceEntries.get(source.path);
  }
  const dest = samplesFile(source.path);
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
