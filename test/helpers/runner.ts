import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createDb, type Db } from "../../db/client";
import { BlobClient } from "../../runner/blobs";
import { loadRunnerConfig, type RunnerConfig } from "../../runner/config";
import { createLogger, type LogLevel } from "../../runner/log";
import { Runner } from "../../runner/loop";
import { RunnerMetrics } from "../../runner/metrics";
import { signalGroup } from "../../runner/process-group";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Fast test settings: short polls and leases so recovery paths run in seconds. */
export const FAST = { POLL_MS: "100", WATCH_MS: "100", LEASE_MS: "2000", STOP_GRACE_MS: "1000" };

export interface RunnerProcess {
  child: ChildProcess;
  pid: number;
  /** Everything printed so far (stdout + stderr). */
  logs(): string;
  /** Resolves with the first log line matching `re` (already printed or future). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** PIDs of FFmpeg processes this runner reported starting. */
  ffmpegPids(): number[];
  /** SIGKILL the runner and every FFmpeg it started (test cleanup; no-op when already gone). */
  destroy(): Promise<void>;
}

/**
 * Starts a runner exactly as `npm run runner` and the Docker image do (`node --import tsx runner/main.ts`) with
 * the given environment on top of this process's. `launcher`: a command that execs the runner in its place (e.g.
 * `prlimit … --`), so the pid is still the runner's.
 */
export function startRunnerProcess(env: Record<string, string>, launcher: string[] = []): RunnerProcess {
  const command = [...launcher, process.execPath, "--import", "tsx", "runner/main.ts"];
  const child = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) {
      const line = out.split("\n").find((l) => w.re.test(l));
      if (line) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const ffmpegPids = () => [...out.matchAll(/ffmpeg started .*pid=(\d+)/g)].map((m) => Number(m[1]));
  return {
    child,
    pid: child.pid!,
    logs: () => out,
    exited,
    ffmpegPids,
    waitForLog(re, timeoutMs = 30_000) {
      const line = out.split("\n").find((l) => re.test(l));
      if (line) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line matching ${re} within ${timeoutMs} ms:\n${out}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async destroy() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      for (const pid of ffmpegPids()) killGroup(pid);
    },
  };
}

/** SIGKILL a process group (FFmpeg runs in its own), ignoring "no such process". */
export function killGroup(pid: number): void {
  signalGroup(pid, "SIGKILL");
}

/** True while a process exists (and is not a zombie waiting to be reaped). */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const { readFile } = await import("node:fs/promises");
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

export interface InProcessRunner {
  runner: Runner;
  config: RunnerConfig;
  db: Db;
  metrics: RunnerMetrics;
  lines: string[];
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A Runner inside the test process (for injecting a blob client or reading metrics), configured through the
 * same zod config as the real entry. Stop it with `stop()` (graceful shutdown).
 */
export async function startInProcessRunner(opts: {
  env: Record<string, string>;
  blobs?: (config: RunnerConfig) => BlobClient;
  level?: LogLevel;
  /** How often the runner looks for dead predecessors' directories (RunnerDeps.predecessorSweepMs). */
  predecessorSweepMs?: number;
  /** How often it touches its directory's mark (RunnerDeps.markTouchMs). */
  markTouchMs?: number;
}): Promise<InProcessRunner> {
  const config = loadRunnerConfig({ PATH: process.env.PATH, ...opts.env });
  const metrics = new RunnerMetrics();
  const db = createDb(config.LIBSQL_URL, { onRoundTrip: () => metrics.dbRoundTrips.inc() });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const log = createLogger({
    prefix: config.RUNNER_ID,
    level: opts.level ?? "debug",
    sink: (line) => {
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    },
  });
  const blobs = opts.blobs?.(config) ?? new BlobClient({ edgeUrl: config.EDGE_URL, token: config.RUNNER_TOKEN });
  const runner = new Runner({ config, db, blobs, metrics, log, version: "test", predecessorSweepMs: opts.predecessorSweepMs, markTouchMs: opts.markTouchMs });
  await runner.start();
  return {
    runner,
    config,
    db,
    metrics,
    lines,
    waitForLog(re, timeoutMs = 30_000) {
      const line = lines.find((l) => re.test(l));
      if (line) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line matching ${re} within ${timeoutMs} ms:\n${lines.join("\n")}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    stop: () => runner.shutdown(),
  };
}

/**
 * Writes an executable `ffmpeg` shell script into a new temporary directory: `script(dir)` gets that directory for
 * the files the stand-in writes. Stand-ins hand every call they do not intercept to the real `ffmpeg`.
 */
export async function writeFfmpegStandIn(prefix: string, script: (dir: string) => string): Promise<{ dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), `vr-${prefix}-`));
  const path = join(dir, "ffmpeg");
  await writeFile(path, script(dir));
  await chmod(path, 0o755);
  return { dir, path };
}

/**
 * An FFmpeg stand-in that behaves like a wedged encode: for encodes (`-progress` in the arguments) it ignores
 * `q`, SIGTERM and SIGINT until SIGKILL; any other call (probe decode, thumbnail) runs the real ffmpeg.
 * Each SIGTERM it receives is appended to `<dir>/signals.log`, so tests can count the stages.
 */
export async function makeStubbornFfmpeg(): Promise<{ path: string; signalsLog: string }> {
  const { dir, path } = await writeFfmpegStandIn(
    "stubborn",
    (d) => `#!/bin/sh
case " $* " in
  *" -progress "*)
    trap 'echo TERM >> "${join(d, "signals.log")}"' TERM
    trap 'echo INT >> "${join(d, "signals.log")}"' INT
    echo "out_time_us=1000000"
    echo "progress=continue"
    while :; do sleep 0.05; done
    ;;
esac
exec ffmpeg "$@"
`,
  );
  return { path, signalsLog: join(dir, "signals.log") };
}

/**
 * An FFmpeg stand-in whose encodes (`-progress` in the arguments) read their source no faster than it plays (`-re`)
 * while real time is on: an encode then lasts as long as its clip however fast or idle this machine is, so a test can
 * act on a running encode without racing its end. Every other call (probe decode, measurement, thumbnail) runs the
 * real ffmpeg unchanged, at full speed. Real time is on from the start; `fullSpeed()` turns it off for the encodes
 * started after it (one already running stays at real time), `realTime()` turns it on again. Its directory is 0700:
 * not for an FFMPEG_USER other than the test's own.
 */
export async function makeRealTimeFfmpeg(): Promise<{ dir: string; path: string; fullSpeed(): Promise<void>; realTime(): Promise<void> }> {
  const { dir, path } = await writeFfmpegStandIn(
    "realtime",
    (d) => `#!/bin/sh
case " $* " in
  *" -progress "*) [ -e "${join(d, "realtime")}" ] && exec ffmpeg -re "$@" ;;
esac
exec ffmpeg "$@"
`,
  );
  const flag = join(dir, "realtime");
  const realTime = () => writeFile(flag, "");
  await realTime();
  return { dir, path, fullSpeed: () => rm(flag, { force: true }), realTime };
}
