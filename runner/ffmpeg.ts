import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { isAbortError } from "./abort";
import { childCommand, withChild, type ChildLease } from "./child-env";
import { eqFilter } from "./eq";
import { ffmpegLocalError, LocalError } from "./local-errors";
import { Mp4Error, readMp4, type Mp4Summary } from "./mp4";
import type { EffectParams } from "./params";

const execFileP = promisify(execFile);

/** What the runner needs to know about a source (or an output) file. */
export interface MediaInfo {
  /** The container's: the longest stream's. */
  durationMs: number;
  /**
   * The video stream's own, when the file states it and it is shorter (audio that runs on past the picture, common
   * in edited clips): outputs keep that audio, so their video track is this long, not durationMs.
   */
  videoMs?: number;
  /**
   * The longest of the streams an output keeps (the video and the first audio), when the file states both and the
   * container runs clearly longer (a second audio track or subtitles past them, which outputs leave out).
   */
  keptMs?: number;
  /** Display size, i.e. after the rotation FFmpeg applies automatically. */
  width: number;
  height: number;
  hasAudio: boolean;
  videoCodec: string;
  /** Average frame rate of the video stream (0 when unknown). */
  fps: number;
}

/**
 * Untrusted files are parsed with the local file protocol only: a playlist or reference file that names a URL
 * (HLS, concat, …) must not make a runner fetch from the network.
 */
const LOCAL_ONLY = ["-protocol_whitelist", "file"];

/** The file is not decodable video: retrying will not help. */
export class NotAVideoError extends Error {}

interface ProbeJson {
  format?: { duration?: string; format_name?: string; start_time?: string };
  streams?: {
    codec_type?: string;
    codec_name?: string;
    width?: number;
    height?: number;
    duration?: string;
    start_time?: string;
    tags?: { rotate?: string; DURATION?: string };
    avg_frame_rate?: string;
    r_frame_rate?: string;
    side_data_list?: { rotation?: number }[];
    disposition?: { attached_pic?: number };
  }[];
}

/**
 * Exit statuses of a program that never ran: 126 found but not executable, 127 not found or its shared libraries
 * missing (the dynamic loader's and setpriv's convention). FFmpeg itself exits 1 on an error.
 */
export const neverRan = (code: number | null | undefined) => code === 126 || code === 127;

/** A spawn failure (ENOENT, EACCES, ENOMEM, EAGAIN …), as opposed to an error of the program's run. */
const isSpawnError = (err: unknown) => /^spawn\b/.test(String((err as { syscall?: unknown } | null)?.syscall ?? ""));

/**
 * Runs a short FFmpeg/ffprobe command. A program that could not be started (or whose binary or libraries are broken)
 * is this runner's trouble, never a verdict on the video: a LocalError("ESPAWN", what), not an exit code.
 */
function run(
  bin: string,
  args: string[],
  opts: { timeoutMs: number; signal?: AbortSignal; what: string; writes?: string[] },
): Promise<{ code: number; stdout: string; stderr: string }> {
  return withChild(opts.signal, (lease) => new Promise((resolve, reject) => {
    const cmd = childCommand(bin, args, lease);
    execFile(
      cmd.file,
      cmd.args,
      { timeout: opts.timeoutMs, killSignal: "SIGKILL", signal: opts.signal, maxBuffer: 8 * 1024 * 1024, env: cmd.env },
      (err, stdout, stderr) => {
        if (isAbortError(err)) return reject(err);
        if (err && (isSpawnError(err) || neverRan((err as { code?: unknown }).code as number))) {
          return reject(new LocalError("ESPAWN", opts.what, firstLine(String(stderr)) || (err as Error).message));
        }
        if (err && typeof (err as { code?: unknown }).code !== "number") return reject(err);
        resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stdout, stderr });
      },
    );
  }), opts.writes);
}

/** "30000/1001" → 29.97; anything unparsable → 0. */
function rate(r: string | undefined): number {
  const [n, d] = (r ?? "").split("/").map(Number);
  return n && d ? n / d : 0;
}

const firstLine = (s: string) =>
  s
    .split("\n")
    .map((l) => l.trim())
    .find(Boolean) ?? "";

/**
 * A check of the source that failed for this runner's own reason (a thread its uid's process limit refused: another
 * run of the uid may hold it), not the video's: that verdict is final, this one is retried. Only that reason: a
 * check writes nothing, and the rest of stderr can quote the input.
 */
const checkTrouble = (stderr: string) => ffmpegLocalError(stderr, "checking the video failed", ["EAGAIN"]);

/**
 * ffprobe a file: duration, display size, audio presence. Throws NotAVideoError for anything without a decodable
 * video stream (not media at all, audio only, a still image, zero duration).
 */
export async function probeMedia(ffprobe: string, path: string, signal?: AbortSignal): Promise<MediaInfo> {
  const { code, stdout, stderr } = await run(
    ffprobe,
    ["-v", "error", ...LOCAL_ONLY, "-print_format", "json", "-show_format", "-show_streams", path],
    { timeoutMs: 60_000, signal, what: "checking the video failed" },
  );
  if (code !== 0) throw checkTrouble(stderr) ?? new NotAVideoError(`not a decodable video: ${firstLine(stderr) || `ffprobe exited ${code}`}`);
  const info = JSON.parse(stdout) as ProbeJson;
  const video = info.streams?.find((s) => s.codec_type === "video" && !s.disposition?.attached_pic);
  if (!video || !video.width || !video.height) throw new NotAVideoError("not a decodable video: no video stream");
  if (/image2|png_pipe|jpeg_pipe|gif/.test(info.format?.format_name ?? "")) {
    throw new NotAVideoError(`not a decodable video: ${info.format?.format_name} is a still image format`);
  }
  const durationS = Number(info.format?.duration ?? video.duration ?? NaN);
  if (!Number.isFinite(durationS) || durationS <= 0) throw new NotAVideoError("not a decodable video: unknown or zero duration");
  const videoS = streamSeconds(video);
  const audio = info.streams?.find((st) => st.codec_type === "audio");
  // Where the kept streams end, not how long they are: a stream that starts late (delayed audio) covers more of
  // the output than its length, and taking its length would accept an output cut short of its end.
  const t0 = Number(info.format?.start_time ?? 0) || 0;
  const endOf = (st: NonNullable<ProbeJson["streams"]>[number], len: number | null) =>
    len === null ? null : Math.max(0, (Number(st.start_time ?? t0) || t0) - t0) + len;
  const videoEnd = endOf(video, videoS);
  const audioEnd = audio ? endOf(audio, streamSeconds(audio)) : null;
  const keptS = videoEnd !== null && (!audio || audioEnd !== null) ? Math.max(videoEnd, audioEnd ?? 0) : null;
  const rotation = Number(video.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ?? video.tags?.rotate ?? 0);
  const quarterTurn = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  return {
    durationMs: Math.round(durationS * 1000),
    ...(videoS !== null && videoS < durationS ? { videoMs: Math.round(videoS * 1000) } : {}),
    ...(keptS !== null && (durationS - keptS) * 1000 > durationTolerance(durationS * 1000) ? { keptMs: Math.round(keptS * 1000) } : {}),
    width: quarterTurn ? video.height : video.width,
    height: quarterTurn ? video.width : video.height,
    hasAudio: info.streams?.some((s) => s.codec_type === "audio") ?? false,
    videoCodec: video.codec_name ?? "unknown",
    fps: rate(video.avg_frame_rate) || rate(video.r_frame_rate),
  };
}

/** A stream's duration in seconds: `duration` (MP4, MOV, TS…), or Matroska's `DURATION` tag ("00:00:10.010000000"). */
function streamSeconds(stream: NonNullable<ProbeJson["streams"]>[number]): number | null {
  const tag = /^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(stream.tags?.DURATION ?? "");
  const s = stream.duration !== undefined ? Number(stream.duration) : tag ? Number(tag[1]) * 3600 + Number(tag[2]) * 60 + Number(tag[3]) : NaN;
  return Number.isFinite(s) && s > 0 ? s : null;
}

/**
 * How much of a source has pictures: the span its quality samples are taken from. The container's duration unless
 * the video stops clearly earlier (by more than the duration check's tolerance), so samples of an ordinary source
 * (streams ending within a frame or two of each other) stay where they always were, fingerprints included.
 */
export function pictureMs(media: Pick<MediaInfo, "durationMs" | "videoMs">): number {
  const v = media.videoMs;
  return v !== undefined && media.durationMs - v > durationTolerance(media.durationMs) ? v : media.durationMs;
}

/** Decodes the first video frame: a header that probes fine can still hold garbage. */
export async function assertDecodable(ffmpeg: string, path: string, signal?: AbortSignal): Promise<void> {
  const { code, stderr } = await run(
    ffmpeg,
    ["-v", "error", "-nostdin", ...LOCAL_ONLY, "-i", path, "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"],
    { timeoutMs: 60_000, signal, what: "checking the video failed" },
  );
  if (code !== 0) throw checkTrouble(stderr) ?? new NotAVideoError(`not a decodable video: ${firstLine(stderr) || `ffmpeg exited ${code}`}`);
}

/** A JPEG poster frame (best effort; short-lived, so it is not part of the stop sequence). */
export async function makeThumbnail(
  ffmpeg: string,
  input: string,
  output: string,
  media: MediaInfo,
  signal?: AbortSignal,
): Promise<void> {
  const at = Math.min(1, pictureMs(media) / 2000).toFixed(3);
  const { code, stderr } = await run(
    ffmpeg,
    ["-v", "error", "-nostdin", "-y", ...LOCAL_ONLY, "-ss", at, "-i", input, "-frames:v", "1", "-vf", "scale=480:-2", "-q:v", "4", "-f", "image2", output],
    { timeoutMs: 20_000, signal, what: "the thumbnail failed", writes: [output] },
  );
  if (code !== 0) throw new Error(`thumbnail failed: ${firstLine(stderr)}`);
}

const even = (n: number) => Math.max(2, 2 * Math.floor(n / 2));

/**
 * The largest centred window of the frame's aspect ratio that a rotation by `degrees` leaves free of the filled
 * corners: the window's corners, turned back, must stay inside the source frame.
 */
export function rotationWindow(width: number, height: number, degrees: number): { w: number; h: number } {
  const t = (Math.abs(degrees) * Math.PI) / 180;
  const [c, s] = [Math.cos(t), Math.sin(t)];
  const f = Math.min(width / (width * c + height * s), height / (width * s + height * c));
  // 2 px less per axis: the rotate filter's interpolation blends the fill colour into the pixels along the edge.
  return { w: Math.min(width, even(width * f - 2)), h: Math.min(height, even(height * f - 2)) };
}

/** What scales a zoom's crop back: zimg's resizer costs about two thirds of swscale's bilinear here (same SSIM). */
export type ZoomScaler = "zscale" | "scale";

/**
 * Whether this FFmpeg has zscale (libzimg; Debian's and most static builds do). Any failure answers "scale",
 * which every build has: a runner never fails to start over it.
 */
export async function detectZoomScaler(ffmpeg: string): Promise<ZoomScaler> {
  try {
    const { stdout } = await withChild(undefined, (lease) => {
      const cmd = childCommand(ffmpeg, ["-hide_banner", "-filters"], lease);
      return execFileP(cmd.file, cmd.args, { timeout: 10_000, maxBuffer: 4 * 1024 * 1024, env: cmd.env });
    });
    return /^\s*\S+\s+zscale\s/m.test(stdout) ? "zscale" : "scale";
  } catch {
    return "scale";
  }
}

export interface EncodePlan {
  args: string[];
  /** Duration the output must have (source duration adjusted for the speed change). */
  expectedDurationMs: number;
  /** Of the output's video track, when the source's video is shorter than its audio (MediaInfo.videoMs). */
  expectedVideoMs?: number;
  /** Of the output as a whole, when the source has streams the output leaves out that run longer (MediaInfo.keptMs). */
  expectedKeptMs?: number;
  /** The geometry actually used, for the recorded params. */
  geometry: { width: number; height: number; cropW: number; cropH: number; cropX: number; cropY: number; scaler?: ZoomScaler };
  /** The files FFmpeg writes (the output, the samples): made ready for its user before it starts (leaseChild). */
  writes: string[];
}

/**
 * The filter chains and the full FFmpeg argument list for one variation (pure). Only effects with a non-neutral
 * value add a filter: a job without rotate never pays for FFmpeg's (expensive) rotate filter, one without color no
 * eq, and so on.
 */
export function buildEncodeArgs(input: {
  source: string;
  output: string;
  params: EffectParams;
  media: MediaInfo;
  preset?: string;
  /** The filter that scales a zoom's crop back to the source size ("zscale" where this FFmpeg has it: detectZoomScaler). */
  scaler?: ZoomScaler;
  /** Extra output options of the video (the quality samples' forced keyframes: runner/quality.ts). */
  keyframes?: readonly string[];
  /**
   * A second output: `chain` (a filter chain on the decoded source, before any effect) written to `file` as raw
   * frames. The quality measurement's source samples come out of the decode the encode does anyway.
   */
  samples?: { chain: string; file: string };
}): EncodePlan {
  const { params: p, media } = input;
  const width = even(media.width);
  const height = even(media.height);
  // Rotation first shrinks the usable window (centred); the zoom then crops inside that window.
  const win = p.rotate ? rotationWindow(width, height, p.rotate) : { w: width, h: height };
  // At least 2 px of margin per axis, so even tiny test clips really get a zoom.
  const cropW = p.zoom > 0 ? Math.min(win.w - 2, even(win.w * (1 - p.zoom))) : win.w;
  const cropH = p.zoom > 0 ? Math.min(win.h - 2, even(win.h * (1 - p.zoom))) : win.h;
  const cropX = Math.round((width - win.w) / 2 + (win.w - cropW) * p.offsetX);
  const cropY = Math.round((height - win.h) / 2 + (win.h - cropH) * p.offsetY);
  const zoomed = cropW !== width || cropH !== height;
  const colorJitter = p.families.includes("color") || p.brightness !== 0 || p.contrast !== 1 || p.saturation !== 1;
  const scaler: ZoomScaler = zoomed && input.scaler === "zscale" ? "zscale" : "scale";
  const scaleBack = scaler === "zscale" ? `zscale=w=${width}:h=${height}:filter=bilinear` : `scale=${width}:${height}:flags=bilinear`;
  const vf = [
    // zimg refuses RGB sources ("YUV color family cannot have RGB matrix coefficients") and keeps a full-range
    // source full range; swscale converted both to limited-range 4:2:0 on its way. Converting first (a no-op for the
    // usual yuv420p source, and the conversion the final format= would do anyway) gives every path the same output.
    ...(scaler === "zscale" ? ["format=yuv420p"] : []),
    ...(p.speed !== 1 ? [`setpts=PTS/${p.speed}`] : []),
    // A faster source is brought to 29.97 first, so the filters see half the frames of a 60 fps clip. Up to
    // 30 fps the output option -r does it (it drops the odd frame of a 30 fps source, like the seed recipe).
    ...(media.fps > 30.5 ? ["fps=30000/1001"] : []),
    // Same size out (ow/oh default to the input's); the crop below removes the filled corners.
    ...(p.rotate ? [`rotate=${((p.rotate * Math.PI) / 180).toFixed(6)}:fillcolor=black`] : []),
    ...(zoomed ? [`crop=${cropW}:${cropH}:${cropX}:${cropY}`, scaleBack] : []),
    // Odd source sizes: H.264 4:2:0 needs even ones.
    ...(!zoomed && (media.width !== width || media.height !== height) ? [`crop=${width}:${height}:0:0`] : []),
    "setsar=1",
    ...(p.mirror ? ["hflip"] : []),
    // eq's fast path, whose brightness moves in 1 % steps: the recorded brightness is the applied step's
    // (runner/eq.ts), so the option names that step instead of the value.
    ...(colorJitter ? [eqFilter(p)] : []),
    ...(p.hue ? [`hue=h=${p.hue}`] : []),
    ...(p.noise > 0 ? [`noise=alls=${p.noise}:allf=t`] : []),
    "format=yuv420p",
  ].join(",");
  const af = [
    ...(p.speed !== 1 ? [`atempo=${p.speed}`] : []),
    ...(p.volumeDb ? [`volume=${p.volumeDb}dB`] : []),
    ...(p.eqGainDb ? [`equalizer=f=${p.eqFreq}:t=q:w=1:g=${p.eqGainDb}`] : []),
  ].join(",");
  const audio = media.hasAudio ? ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", ...(af ? ["-af", af] : [])] : [];
  const s = input.samples;
  const video = s
    ? ["-filter_complex", `[0:v:0]split=2[v][s];[v]${vf}[vout];[s]${s.chain}[samples]`, "-map", "[vout]"]
    : ["-map", "0:v:0", "-vf", vf];
  // The samples are frames, not a video at some rate: nothing duplicated or dropped, stored as decoded.
  const samplesOutput = s ? ["-map", "[samples]", "-fps_mode", "passthrough", "-c:v", "rawvideo", "-f", "nut", s.file] : [];
  const expectedDurationMs = Math.round(media.durationMs / p.speed);
  // An input option, in the source's time: every output (the samples' branch too) ends there, and FFmpeg stops
  // reading. MAX_SOURCE_SECONDS judges the probed duration, and a file can declare 2 s in its header over hours of
  // frames: encoded whole, it held a slot for hours (progress stuck at 99.9 %, never a stall) to fail as "incomplete".
  const readS = ((encodeLimitMs(expectedDurationMs) * p.speed) / 1000).toFixed(3);
  const args = [
    "-hide_banner",
    "-loglevel", "error",
    "-nostats",
    "-progress", "pipe:1",
    "-y",
    ...LOCAL_ONLY,
    "-t", readS,
    "-i", input.source,
    ...video,
    ...audio,
    "-sn", "-dn",
    "-c:v", "libx264",
    "-preset", input.preset ?? "ultrafast",
    "-crf", "23",
    "-maxrate", "2500k",
    "-bufsize", "4000k",
    "-pix_fmt", "yuv420p",
    "-r", "30000/1001",
    "-map_metadata", "-1",
    "-map_chapters", "-1",
    "-fflags", "+bitexact",
    "-movflags", "+faststart",
    ...(input.keyframes ?? []),
    "-f", "mp4",
    input.output,
    ...samplesOutput,
  ];
  return {
    args,
    expectedDurationMs,
    ...(media.videoMs !== undefined ? { expectedVideoMs: Math.round(media.videoMs / p.speed) } : {}),
    ...(media.keptMs !== undefined ? { expectedKeptMs: Math.round(media.keptMs / p.speed) } : {}),
    geometry: { width, height, cropW, cropH, cropX, cropY, ...(zoomed ? { scaler } : {}) },
    writes: [input.output, ...(input.samples ? [input.samples.file] : [])],
  };
}

/** How far an output's duration may be from the expected one (frame-rate resampling, AAC priming). */
export function durationTolerance(expectedMs: number): number {
  return Math.max(250, expectedMs * 0.02);
}

/**
 * How far into the source an encode reads, in the output's time: the probed (expected) duration plus half the
 * tolerance verifyOutput allows. An honest source ends before it (its streams end within a frame or two of its
 * duration), so no output of one is cut; a source holding more than it declares gives an output of the declared
 * length that verifies (the last frame or AAC packet past the cut stays well inside the other half).
 */
export function encodeLimitMs(expectedMs: number): number {
  return expectedMs + durationTolerance(expectedMs) / 2;
}

/**
 * Decides whether an encode really completed: an H.264 video track and the expected duration, read from the
 * file's own MP4 boxes (no second process). Exit code 0 alone proves nothing: an early `q` or a stalled input
 * also exit 0, with a short file or one that was never finalised (no `moov`).
 */
export async function verifyOutput(path: string, expectedMs: number, expectedVideoMs = expectedMs, expectedKeptMs = expectedMs): Promise<Mp4Summary> {
  let info: Mp4Summary;
  try {
    info = await readMp4(path);
  } catch (err) {
    if (!(err instanceof Mp4Error)) throw err;
    throw new Error(`output is not a valid video (${err.message})`);
  }
  const video = info.tracks.find((t) => t.handler === "vide");
  if (!video) throw new Error("output is not a valid video (no video track)");
  if (video.format !== "avc1") throw new Error(`output video codec is ${video.format || "unknown"}, expected h264`);
  const near = (ms: number, expected: number) => Math.abs(ms - expected) <= durationTolerance(expected);
  // The whole as long as the streams it keeps, or (stream durations the file misstates) as the source's container.
  if (!near(info.durationMs, expectedKeptMs) && !near(info.durationMs, expectedMs)) {
    throw new Error(`output is incomplete: ${info.durationMs} ms of ${expectedKeptMs} ms`);
  }
  // The video track as long as the source's video, or (a stream duration the file misstates) as the whole: a stopped
  // or truncated encode is short of both.
  if (!near(video.durationMs, expectedVideoMs) && !near(video.durationMs, expectedMs)) {
    throw new Error(`output is incomplete: ${video.durationMs} ms of ${expectedVideoMs} ms of video`);
  }
  return info;
}

export interface FfmpegExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() at exit. */
  at: number;
  /** Set when FFmpeg never started (spawn failed: EAGAIN, ENOMEM, EMFILE, ENOENT …); code and signal are then null. */
  spawnError?: NodeJS.ErrnoException;
}

export interface FfmpegProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<FfmpegExit>;
  /** Last lines FFmpeg wrote to stderr (errors only: -loglevel error). */
  stderrTail(): string;
}

/**
 * Spawns FFmpeg directly (no shell: a shell that gets SIGTERM dies and leaves FFmpeg encoding), with stdin as a
 * pipe (so `q` works; never -nostdin) and in its own process group (so signals reach exactly this encode).
 * `onProgress` gets the output time in ms from `-progress pipe:1` blocks.
 */
export function spawnFfmpeg(
  bin: string,
  args: string[],
  onProgress?: (outTimeMs: number) => void,
  lease?: ChildLease,
): FfmpegProcess {
  // Started as every media child is (runner/child-env.ts): through setpriv it dies with the runner and may run as
  // FFMPEG_USER (`lease`'s uid); setpriv execs FFmpeg in place, so the pid and process group are FFmpeg's.
  const cmd = childCommand(bin, args, lease);
  const child = spawn(cmd.file, cmd.args, { stdio: ["pipe", "pipe", "pipe"], detached: true, env: cmd.env });
  // Writing `q` after FFmpeg exited gives EPIPE; that must not crash the runner.
  child.stdin?.on("error", () => {});
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  let buf = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      const eq = line.indexOf("=");
      if (eq < 0) continue;
      const k = line.slice(0, eq).trim();
      const v = line.slice(eq + 1).trim();
      // out_time_us (and the misnamed out_time_ms) are microseconds; "N/A" before the first frame.
      if ((k === "out_time_us" || k === "out_time_ms") && /^\d+$/.test(v)) onProgress?.(Number(v) / 1000);
    }
  });
  const exited = new Promise<FfmpegExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal, at: performance.now() }));
    child.once("error", (spawnError: NodeJS.ErrnoException) => resolve({ code: null, signal: null, at: performance.now(), spawnError }));
  });
  return { child, pid: child.pid ?? -1, exited, stderrTail: () => stderr.trim() };
}
