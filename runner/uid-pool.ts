import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { abortError } from "./abort";

/**
 * Every uid of the range is quarantined: no media child can run on this runner any more. Its code is a local one
 * (runner/local-errors.ts): the variation that asked goes back to the queue for another runner, and this one claims
 * nothing more (/healthz 503) instead of holding variations that wait for a uid forever.
 */
export const noUidLeft = () => Object.assign(new Error("no uid of FFMPEG_USER's range is left"), { code: "ENOUID" });

/**
 * The uids of FFMPEG_USER's range (`<first>-<last>:<gid>`) and what makes one safe to hand out again. Each media
 * child runs as a uid no other running child has (take); when it has exited, every process still running as that
 * uid is killed (clear) before another child gets it (put). Code an upload smuggled into FFmpeg can start a process
 * in a session of its own, which escapes the process-group stop and the parent-death signal: without this it would
 * outlive its run and be there, same uid, when the uid's next run writes another user's output.
 *
 * The last uid of the range is never given to a child: it is the killer's real uid (see KILL_SCRIPT).
 */
export class UidPool {
  private readonly free: number[] = [];
  private readonly waiting: { give: (uid: number) => void; fail: (err: Error) => void }[] = [];
  private quarantined = 0;
  /** Killers share one real uid and would kill each other: one at a time. */
  private killing: Promise<unknown> = Promise.resolve();
  readonly first: number;
  readonly last: number;
  private readonly killer: number;

  constructor(
    range: { uid: number; lastUid: number },
    private readonly hooks: {
      onWaiting?: (waiting: number) => void;
      /** A uid whose processes could not be killed: never handed out again. */
      onQuarantine?: (uid: number, survivors: number[]) => void;
    } = {},
  ) {
    this.first = range.uid;
    this.last = range.lastUid;
    this.killer = range.lastUid;
    for (let uid = this.first; uid < this.killer; uid++) this.free.push(uid);
  }

  /** Uids that may still be handed out (free or in use), the killer's not counted. */
  get usable(): number {
    return this.killer - this.first - this.quarantined;
  }

  take(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.usable === 0) return Promise.reject(noUidLeft());
    const uid = this.free.shift();
    if (uid !== undefined) return Promise.resolve(uid);
    return new Promise((resolve, reject) => {
      const waiter = {
        give: (u: number) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(u);
        },
        fail: (err: Error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        this.hooks.onWaiting?.(this.waiting.length);
        reject(abortError(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
      this.hooks.onWaiting?.(this.waiting.length);
    });
  }

  /**
   * After its child exited: kills what is left of `uid`, runs `beforeReuse` (the run's files are sealed there: the
   * next run of this uid must find them no longer its own), then hands the uid out again, or never when the kill
   * failed.
   */
  async release(uid: number, beforeReuse: () => Promise<void> = async () => {}): Promise<void> {
    // Anything that leaves the uid in doubt keeps it out of the pool, said once, instead of losing it unsaid.
    let survivors: number[];
    try {
      survivors = await this.clear(uid);
    } catch {
      survivors = [-1]; // /proc could not be read: no telling whether anything of the uid lives on
    }
    try {
      await beforeReuse();
    } catch {
      survivors = survivors.length ? survivors : [-1]; // a file of the run's may still be its own
    }
    if (survivors.length) {
      this.quarantined++;
      this.hooks.onQuarantine?.(uid, survivors);
      // The last one: whoever waits would wait for ever.
      if (this.usable > 0) return;
      for (const w of this.waiting.splice(0)) w.fail(noUidLeft());
      return this.hooks.onWaiting?.(0);
    }
    // To the back of the line: the most time before it is reused.
    const next = this.waiting.shift();
    if (!next) return void this.free.push(uid);
    this.hooks.onWaiting?.(this.waiting.length);
    next.give(uid);
  }

  /** Kills every process of every uid of the range (a previous life's leftovers); the uids that kept some. */
  async clearAll(): Promise<number[]> {
    const kept: number[] = [];
    for (let uid = this.first; uid <= this.last; uid++) if ((await this.clear(uid)).length) kept.push(uid);
    return kept;
  }

  /**
   * Sends SIGKILL to every process of `uid` and waits until /proc shows none running (a zombie runs no code), a few
   * rounds at most; the pids still running after that. The scan only reads: signalling by pid could hit a pid reused
   * meanwhile by somebody else's process. (kill(-1)'s own answer says nothing: it succeeds whenever any other
   * process exists, signalled or not.)
   */
  private async clear(uid: number): Promise<number[]> {
    let survivors: number[] = [];
    for (let round = 0; round < 3; round++) {
      await this.kill(uid);
      const deadline = Date.now() + 2000;
      for (;;) {
        survivors = await runningAs(uid);
        if (!survivors.length || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      if (!survivors.length) return [];
    }
    return survivors;
  }

  private kill(uid: number): Promise<void> {
    const run = this.killing.then(
      () =>
        new Promise<void>((resolve) => {
          const args = ["-e", KILL_SCRIPT, String(SETRESUID), String(this.killer), String(uid)];
          execFile("perl", args, { timeout: 10_000, killSignal: "SIGKILL", env: { PATH: process.env.PATH } }, () => resolve());
        }),
    );
    this.killing = run;
    return run;
  }
}

/**
 * kill(-1, SIGKILL) with effective uid U signals every process whose real or saved uid is U, whatever its session
 * or process group, in one pass a fork cannot outrun (the kernel holds the task list). It is sent by a process that
 * the processes of U can neither signal nor trace: started as root, it sets real and saved uid to the range's
 * reserved uid (no process ever runs as it) and only the effective uid to U (setresuid, a syscall of its own: no
 * exec after it, which would copy U into the saved uid). A helper started as U (setpriv, then `kill`) was killed
 * first by a leftover that looped `kill -KILL -1`, and the leftover lived on.
 */
const KILL_SCRIPT = `my ($nr, $x, $u) = map { $_ + 0 } @ARGV; syscall($nr, $x, $u, $x) == 0 or exit 2; kill("KILL", -1); exit 0`;

/** setresuid's syscall number; null where this runner does not know it (then a range cannot be used). */
export const SETRESUID: number | null = ({ x64: 117, arm64: 147 } as Record<string, number>)[process.arch] ?? null;

/**
 * Pids of processes (not zombies) whose real, effective or saved uid is `uid`. All read at once (a release waits on
 * it); throws when /proc cannot be read.
 */
async function runningAs(uid: number): Promise<number[]> {
  const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name));
  const found = await Promise.all(
    pids.map(async (pid) => {
      // Gone meanwhile is gone; any other failure (too many open files) must not pass for "not running".
      const status = await readFile(`/proc/${pid}/status`, "utf8").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT" || err.code === "ESRCH") return "";
        throw err;
      });
      const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
      if (!uids || /^State:\s+Z/m.test(status)) return null;
      return uids.slice(1, 4).some((u) => Number(u) === uid) ? Number(pid) : null;
    }),
  );
  return found.filter((pid): pid is number => pid !== null);
}
