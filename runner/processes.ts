import type { StopStage } from "../db/queries/variations";
import type { FfmpegExit, FfmpegProcess } from "./ffmpeg";
import type { Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { signalGroup } from "./process-group";

/** Why a running variation is stopped: its job was cancelled, another attempt owns it, the runner shuts down, or the encode stalled. */
export type StopReason = "cancel" | "lost" | "shutdown" | "stall";

export interface StopOutcome {
  /** Last stage that had to be sent; null when FFmpeg had already exited before the first one. */
  stage: StopStage | null;
  /** From the first stage to the exit (0 when no stage was sent). */
  durationMs: number;
  exit: FfmpegExit;
}

interface Entry {
  proc: FfmpegProcess;
  exit: FfmpegExit | null;
  /** Set when the first stage (`q`) is actually sent; exits after this are never "completed". */
  stage: StopStage | null;
  stopping: Promise<StopOutcome> | null;
}

/**
 * The registered-process map, keyed by task (variation id + attempt, so an old attempt winding down never touches a new one), and the stop sequence: `q` on stdin → STOP_GRACE_MS →
 * SIGTERM to the process group → STOP_GRACE_MS → SIGKILL. Each stage is sent once: a repeated SIGTERM makes
 * FFmpeg exit without finalising the file, so escalation waits instead of re-sending.
 */
export class ProcessRegistry {
  private entries = new Map<string, Entry>();

  constructor(private readonly opts: { graceMs: number; log: Logger; metrics: RunnerMetrics }) {}

  register(taskKey: string, proc: FfmpegProcess): void {
    const entry: Entry = { proc, exit: null, stage: null, stopping: null };
    this.entries.set(taskKey, entry);
    this.opts.metrics.ffmpegRunning.inc({}, 1);
    void proc.exited.then((exit) => {
      entry.exit = exit;
      this.opts.metrics.ffmpegRunning.inc({}, -1);
      // Keep the entry until the owner has read stopStage(); it unregisters after handling the exit.
    });
  }

  unregister(taskKey: string): void {
    this.entries.delete(taskKey);
  }

  get size(): number {
    let n = 0;
    for (const e of this.entries.values()) if (!e.exit) n++;
    return n;
  }

  /** The stage that was sent before FFmpeg exited, or null if it exited on its own. */
  stopStage(taskKey: string): StopStage | null {
    return this.entries.get(taskKey)?.stage ?? null;
  }

  /** Runs the stop sequence once per process; later calls share the same outcome. Null for an unknown id. */
  stop(taskKey: string, reason: StopReason): Promise<StopOutcome> | null {
    const entry = this.entries.get(taskKey);
    if (!entry) return null;
    entry.stopping ??= this.sequence(taskKey, entry, reason);
    return entry.stopping;
  }

  /** Runs the stop sequence on every registered process (shutdown). */
  stopAll(reason: StopReason): void {
    for (const key of this.entries.keys()) void this.stop(key, reason);
  }

  /** Resolves once every registered process has exited. */
  async allExited(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => e.proc.exited));
  }

  /** Second signal: SIGKILL every process group right away. */
  killAll(): void {
    for (const [id, e] of this.entries) {
      if (e.exit) continue;
      e.stage = "sigkill";
      this.signal(e, "SIGKILL");
      this.opts.log.warn("stop stage sigkill (immediate)", { variation: id, pid: e.proc.pid });
    }
  }

  private signal(e: Entry, sig: NodeJS.Signals): void {
    signalGroup(e.proc.pid, sig);
  }

  private async sequence(id: string, e: Entry, reason: StopReason): Promise<StopOutcome> {
    const { graceMs, log, metrics } = this.opts;
    if (e.exit) return { stage: null, durationMs: 0, exit: e.exit };
    const t0 = performance.now();
    const exitedWithin = (ms: number) =>
      Promise.race([e.proc.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    const stage = (s: StopStage) => {
      e.stage = s;
      metrics.stopStages.inc({ stage: s });
      log.info(`stop stage ${s}`, { variation: id, pid: e.proc.pid, reason, after_ms: Math.round(performance.now() - t0) });
    };

    stage("q");
    const stdin = e.proc.child.stdin;
    if (stdin && !stdin.destroyed && stdin.writable) stdin.write("q\n");
    if (!(await exitedWithin(graceMs))) {
      stage("sigterm");
      this.signal(e, "SIGTERM");
      if (!(await exitedWithin(graceMs))) {
        stage("sigkill");
        this.signal(e, "SIGKILL");
      }
    }
    const exit = await e.proc.exited;
    const durationMs = exit.at - t0;
    metrics.stopDuration.observe(durationMs / 1000);
    log.info("ffmpeg stopped", {
      variation: id,
      stage: e.stage,
      code: exit.code,
      signal: exit.signal,
      ms: Math.round(durationMs),
    });
    return { stage: e.stage, durationMs, exit };
  }
}
