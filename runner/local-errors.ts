/**
 * Failures of the runner's own machine (its disk, its permissions) are not edge outages and say nothing about the
 * video: they count an attempt (another runner may have room) and end as failed after the cap, with a reason a
 * user can read — except ENOUID (no FFmpeg uid left), and a full disk that giving back the runner's idle cached
 * sources made room on (`diskFull`), handed back uncounted (runner/outcomes.ts `local`). Reasons are shown to users,
 * so they never carry the runner's internal paths.
 */

const LOCAL_CODES: Record<string, string> = {
  ENOSPC: "the runner ran out of disk space",
  EDQUOT: "the runner ran out of disk quota",
  EACCES: "the runner may not write its work files (permission denied)",
  EPERM: "the runner may not write its work files (operation not permitted)",
  EROFS: "the runner's work directory is read-only",
  EMFILE: "the runner has too many open files",
  ENFILE: "the runner has too many open files",
  EIO: "the runner's disk failed to read or write (I/O error)",
  // FFmpeg could not start a thread or process: its uid's process limit (FFMPEG_MAX_PROCESSES), which another run
  // of the same uid can use up, or the machine's.
  EAGAIN: "the runner had no room for FFmpeg's threads (resource temporarily unavailable)",
  // Not an errno: every uid of FFMPEG_USER's range kept processes SIGKILL could not end (runner/uid-pool.ts).
  ENOUID: "the runner has no FFmpeg user left to run it as",
  // Not an errno: FFmpeg could not be started (ENOMEM, EAGAIN, EACCES … at spawn), see runner/encode.ts.
  ESPAWN: "the runner could not start FFmpeg",
};

/** FFmpeg reports the same problems as text on stderr. */
const FFMPEG_LOCAL = [
  { re: /No space left on device/i, code: "ENOSPC" },
  { re: /Disk quota exceeded/i, code: "EDQUOT" },
  { re: /Permission denied/i, code: "EACCES" },
  { re: /Read-only file system/i, code: "EROFS" },
  // FFmpeg's own line ending (a file name an input quotes ends in a quote, not here).
  { re: /: Resource temporarily unavailable$/im, code: "EAGAIN" },
  { re: /: Too many open files( in system)?$/im, code: "EMFILE" },
];

export class LocalError extends Error {
  constructor(
    readonly code: string,
    what: string,
    /** What went wrong in the runner's own words (stderr, an errno), for its log only: it may hold paths. */
    readonly detail?: string,
  ) {
    super(`${what}: ${LOCAL_CODES[code] ?? code}`);
  }
  /** No uid of FFMPEG_USER's range is left: this runner can run no FFmpeg and claims nothing more. */
  get runnerGone(): boolean {
    return this.code === "ENOUID";
  }
  /** The disk is full (or over quota): the runner should stop claiming until it has room. */
  get diskFull(): boolean {
    return this.code === "ENOSPC" || this.code === "EDQUOT";
  }
}

/** A LocalError for a Node fs/stream error with a local errno code, else null. */
export function asLocalError(err: unknown, what: string): LocalError | null {
  if (err instanceof LocalError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in LOCAL_CODES) return new LocalError(code, what);
  return null;
}

/**
 * A LocalError when FFmpeg's stderr names a local problem (e.g. writing its output hit a full disk), else null.
 * `only`: the codes that can be this run's own trouble (a probe writes nothing, so a full disk in its stderr can only
 * be text from the input). The matching line is the error's detail, for the runner's log.
 */
export function ffmpegLocalError(stderr: string, what: string, only?: readonly string[]): LocalError | null {
  for (const x of FFMPEG_LOCAL) {
    if (only && !only.includes(x.code)) continue;
    const m = x.re.exec(stderr);
    if (m) return new LocalError(x.code, what, stderr.slice(stderr.lastIndexOf("\n", m.index) + 1).split("\n")[0]);
  }
  return null;
}

/**
 * Removes what is internal from a message that may reach a user: absolute paths ("/tmp/x/y.mp4: Invalid data" →
 * "y.mp4: …"), object keys ("outputs/j/v.a1.mp4" → "the stored file") and URLs ("http://edge:8787/…" → "the
 * service"). A path must start the message or follow a space, quote, parenthesis or "=", so ordinary words with a
 * slash in them are left alone. `privateDirs` (the runner's WORK_DIR) are removed wherever they appear.
 */
export function scrubPaths(message: string, privateDirs: readonly string[] = []): string {
  // A directory of the runner's own is removed literally first, with the folders under it: a WORK_DIR with a space
  // in it ("/srv/video refresher") slipped past the pattern below, which stops at whitespace.
  for (const dir of privateDirs) {
    const escaped = dir.replace(/\/+$/, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (escaped) message = message.replace(new RegExp(`${escaped}/(?:[^\\s/'"]+/)*`, "g"), "");
  }
  return message
    .replace(/\bhttps?:\/\/[^\s'"()]*[^\s'"():,.]/g, "the service")
    .replace(/(^|[\s'"(=])\/(?:[^\s/'"]+\/)+([^\s/'"]+)/g, (_m, pre: string, base: string) => `${pre}${base}`)
    .replace(/\b(?:sources|uploads|outputs|thumbs)\/[^\s'"():]+/g, "the stored file");
}
