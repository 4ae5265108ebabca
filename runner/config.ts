import { randomBytes } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { SOURCE_LIMIT_DEFAULTS } from "../db/source-limits";
import type { ChildUser } from "./child-env";
import { SETRESUID } from "./uid-pool";

const uid = () => process.getuid?.() ?? -1;
/** Ids above this are not ids to every tool (signed 32-bit), and 2^32 - 1 is none at all. */
const MAX_ID = 2 ** 31 - 1;

const ms = (def: number, min: number) => z.coerce.number().int().min(min).default(def);

export const Schema = z
  .object({
    LIBSQL_URL: z.string().regex(/^(https?|libsql|wss?):\/\//, "LIBSQL_URL must be an http(s):// or libsql:// URL"),
    LIBSQL_AUTH_TOKEN: z.string().optional(),
    EDGE_URL: z.string().regex(/^https?:\/\//, "EDGE_URL must be the edge's http(s):// base URL"),
    RUNNER_TOKEN: z
      .string()
      .min(16, "RUNNER_TOKEN must be at least 16 characters (the same secret as the edge's)")
      // .env.example's placeholder is long enough: a copy never filled in would otherwise start, and every call to
      // the edge would be refused (or, on an edge holding the same placeholder, accepted).
      .refine((v) => !v.startsWith("replace-with-"), "RUNNER_TOKEN is still a placeholder (replace-with-…): set it to the edge's RUNNER_TOKEN secret"),
    RUNNER_ID: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, "RUNNER_ID may only use letters, digits and . _ : -")
      // Unique per process life: containers sharing a hostname (host networking) also share pids (tini's child),
      // and two live runners with one id would take each other's work.
      .default(`${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`),
    CONCURRENCY: z.coerce.number().int().min(1).max(64).default(1),
    WORK_DIR: z.string().optional(),
    FFMPEG_PATH: z.string().default("ffmpeg"),
    FFPROBE_PATH: z.string().default("ffprobe"),
    /**
     * `<uid>:<gid>` or `<first>-<last>:<gid>` FFmpeg and ffprobe run as (numeric, none 0): they parse untrusted
     * uploads, and a process of the runner's own uid can read the runner's secrets. With a range, each child runs
     * as a uid no other running child has, and everything of that uid is killed when it exits (runner/child-env.ts).
     * Needs a runner started as root and util-linux `setpriv`.
     */
    FFMPEG_USER: z
      .string()
      .regex(/^\d{1,10}(-\d{1,10})?:\d{1,10}$/, "FFMPEG_USER must be <uid>:<gid> or <first uid>-<last uid>:<gid>, all numeric (e.g. 990:990)")
      .transform((s) => {
        const [uids, gid] = s.split(":") as [string, string];
        const [uid, last] = uids.split("-").map(Number) as [number, number | undefined];
        return { uid, lastUid: last ?? uid, gid: Number(gid) };
      })
      .refine((u) => u.uid > 0 && u.gid > 0, "FFMPEG_USER must not be root (uid 0 or gid 0)")
      // 2^32 - 1 means "unchanged" to setpriv and larger ones wrap round to 0: FFmpeg would run as root.
      .refine((u) => u.lastUid <= MAX_ID && u.gid <= MAX_ID, `FFMPEG_USER's ids must be at most ${MAX_ID}`)
      .refine((u) => u.lastUid >= u.uid && u.lastUid - u.uid < 65_536, "FFMPEG_USER's range must run from a lower uid to a higher one (at most 65536 uids)")
      .optional(),
    /**
     * Most processes and threads one FFmpeg or ffprobe run may have at once (RLIMIT_NPROC of its uid, through
     * util-linux `prlimit`; only with FFMPEG_USER): code an upload smuggled into a decoder cannot fork until the host
     * has no pids left. With one uid for every child the uid gets this times (CONCURRENCY + 2).
     */
    FFMPEG_MAX_PROCESSES: z.coerce.number().int().min(64).max(4_194_304).default(1024),
    POLL_MS: ms(1000, 10),
    LEASE_MS: ms(30_000, 100),
    WATCH_MS: ms(1000, 10),
    STOP_GRACE_MS: ms(2000, 10),
    /** No FFmpeg progress for this long → the stop sequence, then a retry (or failure) with "encode stalled". */
    STALL_MS: ms(60_000, 100),
    /** Below this much free space in WORK_DIR the runner claims nothing (it would only fail for lack of room). */
    MIN_FREE_BYTES: z.coerce.number().int().min(0).default(64 * 1024 * 1024),
    /** Longest source this runner encodes, in seconds; longer ones fail with a reason naming the limit. */
    MAX_SOURCE_SECONDS: z.coerce.number().int().min(1).default(SOURCE_LIMIT_DEFAULTS.maxSeconds),
    /** Largest width or height (after rotation) of a source this runner encodes, in pixels. */
    MAX_SOURCE_DIMENSION: z.coerce.number().int().min(16).default(SOURCE_LIMIT_DEFAULTS.maxDimension),
    /**
     * Quality floors (runner/quality.ts): an output whose SSIM against the source is below QUALITY_SSIM_FLOOR (too
     * damaged), or whose distinctness from its closest completed sibling is below QUALITY_DISTINCT_FLOOR (mean
     * absolute difference of sampled frames, % of the 8-bit range: too close), is re-drawn with a new seed, at most
     * MAX_REDRAWS times; then the best draw is kept. A floor of 1 (SSIM) or 100 (distinct) forces re-draws (tests).
     */
    QUALITY_SSIM_FLOOR: z.coerce.number().min(0).max(1).default(0.5),
    QUALITY_DISTINCT_FLOOR: z.coerce.number().min(0).max(100).default(0.3),
    MAX_REDRAWS: z.coerce.number().int().min(0).max(5).default(2),
    METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
    LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  })
  // Each encode holds a uid for its whole run: one per encode slot, one more so that probes, measurements and
  // thumbnails are never queued behind every encode, and the last one is the killer's (runner/uid-pool.ts).
  .refine((c) => !c.FFMPEG_USER || c.FFMPEG_USER.lastUid === c.FFMPEG_USER.uid || c.FFMPEG_USER.lastUid - c.FFMPEG_USER.uid + 1 >= c.CONCURRENCY + 2, {
    message: "a range of FFMPEG_USER uids needs at least CONCURRENCY + 2 of them",
    path: ["FFMPEG_USER"],
  })
  .refine((c) => c.LEASE_MS >= 3 * c.WATCH_MS, {
    message: "LEASE_MS must be at least 3 × WATCH_MS, or leases expire between heartbeats",
    path: ["LEASE_MS"],
  });

export type RunnerConfig = Omit<z.infer<typeof Schema>, "WORK_DIR" | "FFMPEG_USER"> & {
  WORK_DIR: string;
  /** util-linux `setpriv`, when present: FFmpeg is started through it so the kernel kills it with the runner. */
  SETPRIV_PATH: string | null;
  /** util-linux `prlimit`, when present: with FFMPEG_USER, each child's process limit is set through it. */
  PRLIMIT_PATH: string | null;
  /** The user FFmpeg runs as; null: the runner's own. */
  FFMPEG_USER: ChildUser | null;
};

export class ConfigError extends Error {}

/** Finds an executable the way a shell would (absolute/relative path as given, else each PATH entry). */
export function resolveExecutable(name: string, pathEnv = process.env.PATH ?? ""): string | null {
  const candidates = name.includes("/") ? [name] : pathEnv.split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return isAbsolute(c) ? c : join(process.cwd(), c);
    } catch {
      // not here; keep looking
    }
  }
  return null;
}

/**
 * Validates the runner's environment. Empty strings count as unset (e.g. `-e METRICS_PORT=` in Docker).
 * Throws ConfigError with one readable line per problem.
 */
export function loadRunnerConfig(env: NodeJS.ProcessEnv): RunnerConfig {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = Schema.safeParse(cleaned);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "config"}: ${i.message}`);
    throw new ConfigError(`Invalid runner configuration:\n${lines.join("\n")}`);
  }
  const c = result.data;
  const problems: string[] = [];
  const ffmpeg = resolveExecutable(c.FFMPEG_PATH);
  const ffprobe = resolveExecutable(c.FFPROBE_PATH);
  if (!ffmpeg) problems.push(`  FFMPEG_PATH: "${c.FFMPEG_PATH}" is not an executable (install ffmpeg or set FFMPEG_PATH)`);
  if (!ffprobe) problems.push(`  FFPROBE_PATH: "${c.FFPROBE_PATH}" is not an executable (install ffmpeg or set FFPROBE_PATH)`);
  const setpriv = resolveExecutable("setpriv");
  const prlimit = resolveExecutable("prlimit");
  if (c.FFMPEG_USER) {
    // Switching user needs CAP_SETUID/CAP_SETGID, and stopping, reading and removing what FFmpeg made as that user
    // needs CAP_KILL and CAP_DAC_OVERRIDE: root (in a container, its default capabilities) has them all.
    if (uid() !== 0) problems.push(`  FFMPEG_USER: the runner must start as root to run FFmpeg as another user (it runs as uid ${uid()})`);
    if (!setpriv) problems.push("  FFMPEG_USER: needs util-linux `setpriv` on PATH");
    if (!prlimit) problems.push("  FFMPEG_USER: needs util-linux `prlimit` on PATH (FFMPEG_MAX_PROCESSES)");
    if (c.FFMPEG_USER.lastUid > c.FFMPEG_USER.uid) {
      // The killer of a uid's leftovers (runner/uid-pool.ts) is a perl one-liner making a raw setresuid syscall.
      if (!resolveExecutable("perl")) problems.push("  FFMPEG_USER: a range of uids needs `perl` on PATH (Debian's perl-base)");
      if (SETRESUID === null) problems.push(`  FFMPEG_USER: a range of uids is supported on x64 and arm64 only (this is ${process.arch})`);
    }
  }
  if (problems.length) throw new ConfigError(`Invalid runner configuration:\n${problems.join("\n")}`);
  // Stable across restarts (no pid), so a restarted runner finds and removes what its predecessor left. It may be
  // shared: each runner works in its own marked subdirectory and deletes nothing else (runner/workdir.ts).
  // Absolute: FFmpeg's messages name files under it, and only absolute paths are scrubbed from users' reasons.
  const workDir = resolve(c.WORK_DIR ?? join(tmpdir(), "video-refresher"));
  return { ...c, WORK_DIR: workDir, FFMPEG_PATH: ffmpeg!, FFPROBE_PATH: ffprobe!, SETPRIV_PATH: setpriv, PRLIMIT_PATH: prlimit, FFMPEG_USER: c.FFMPEG_USER ?? null };
}
