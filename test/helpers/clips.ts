import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rename, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Generated clips are cached here across test files and runs (never committed). */
export const CLIP_DIR = join(tmpdir(), "video-refresher-clips");

export interface ClipSpec {
  seconds: number;
  width?: number;
  height?: number;
  fps?: number;
  audio?: boolean;
  /** The tone's length when it is not the picture's (a source whose audio runs on past its video). */
  audioSeconds?: number;
}

const inFlight = new Map<string, Promise<string>>();

/**
 * A test clip generated with lavfi (testsrc2 + a sine tone), H.264/AAC MP4; cached by its parameters. Concurrent
 * callers (even in other processes) are safe: the file is written under a temporary name and renamed.
 */
export function makeClip(spec: ClipSpec): Promise<string> {
  const { seconds, width = 320, height = 240, fps = 30, audio = true, audioSeconds } = spec;
  const name = `testsrc2_${width}x${height}_${fps}fps_${seconds}s${audio ? `_a${audioSeconds ?? ""}` : ""}.mp4`;
  const path = join(CLIP_DIR, name);
  let p = inFlight.get(path);
  if (!p) {
    p = (async () => {
      if (await stat(path).then((s) => s.size > 0, () => false)) return path;
      await mkdir(CLIP_DIR, { recursive: true });
      const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp.mp4`;
      await run("ffmpeg", [
        "-v", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", `testsrc2=s=${width}x${height}:r=${fps}:d=${seconds}`,
        ...(audio ? ["-f", "lavfi", "-i", `sine=f=440:d=${audioSeconds ?? seconds}`] : []),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        ...(audio ? ["-c:a", "aac", ...(audioSeconds === undefined ? ["-shortest"] : [])] : []),
        "-f", "mp4", tmp,
      ]);
      await rename(tmp, path);
      return path;
    })();
    inFlight.set(path, p);
  }
  return p;
}

/**
 * A file that passes an MP4 sniff (`ftyp` box) but is not decodable video: what a user might upload by mistake
 * (or a truncated transfer).
 */
export async function makeNotAVideo(): Promise<string> {
  await mkdir(CLIP_DIR, { recursive: true });
  const path = join(CLIP_DIR, "not-a-video.mp4");
  const header = Buffer.from([0, 0, 0, 0x18, ...Buffer.from("ftypisom"), 0, 0, 2, 0, ...Buffer.from("isomiso2")]);
  // Written aside and renamed: test files running in parallel read this path while another call replaces it.
  const aside = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  await writeFile(aside, Buffer.concat([header, randomBytes(64 * 1024)]));
  await rename(aside, path);
  return path;
}

export interface ProbedFile {
  formatName: string;
  durationMs: number;
  streams: { codec_type: string; codec_name: string; width?: number; height?: number; pix_fmt?: string; r_frame_rate?: string }[];
  tags: Record<string, string>;
  /** moov before mdat (`+faststart`). */
  faststart: boolean;
}

/** ffprobe a file for assertions (format, streams, global tags) plus where the moov atom sits. */
export async function probeFile(path: string): Promise<ProbedFile> {
  const { stdout } = await run("ffprobe", ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", path]);
  const j = JSON.parse(stdout) as { format: { format_name: string; duration: string; tags?: Record<string, string> }; streams: ProbedFile["streams"] };
  const { readFile } = await import("node:fs/promises");
  const head = (await readFile(path)).subarray(0, 1024 * 1024).toString("latin1");
  const moov = head.indexOf("moov");
  const mdat = head.indexOf("mdat");
  return {
    formatName: j.format.format_name,
    durationMs: Math.round(Number(j.format.duration) * 1000),
    streams: j.streams,
    tags: j.format.tags ?? {},
    faststart: moov >= 0 && (mdat < 0 || moov < mdat),
  };
}
