import { execFile } from "node:child_process";

/**
 * How the runner starts FFmpeg and ffprobe. They parse untrusted uploads with a large decoder surface; the runner's
 * own environment holds the database credential (LIBSQL_AUTH_TOKEN) and RUNNER_TOKEN, which reach every user's data.
 *
 * - A child gets only what locating binaries and libraries, temporary files and locale need, so a decoder bug that
 *   reads its environment finds no secret there.
 * - Through util-linux `setpriv` (when present) it dies with the runner (`--pdeathsig`): a SIGKILLed runner's
 *   FFmpeg would otherwise encode on to the end.
 * - With FFMPEG_USER it runs as that unprivileged user, with no supplementary groups, no capabilities and no way to
 *   gain any. Stripping the environment alone is not enough: a process of the runner's own uid can read the
 *   runner's initial environment in /proc/<pid>/environ, and the secrets are there for the runner's whole life.
 */
const PASSED = ["PATH", "LD_LIBRARY_PATH", "TMPDIR", "LANG", "LC_ALL", "TZ"] as const;

export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const name of PASSED) if (env[name] !== undefined) out[name] = env[name];
  return out;
}

export interface ChildUser {
  /** The first (or only) uid. */
  uid: number;
  /** The last uid of a range (FFMPEG_USER=`<first>-<last>:<gid>`); unset or equal to `uid` for one user. */
  lastUid?: number;
  gid: number;
}

export interface ChildLaunch {
  /** Absolute path of `setpriv`, or null (then children neither die with the runner nor change user). */
  setpriv: string | null;
  /** The user(s) FFmpeg runs as (needs `setpriv` and a runner started as root), or null for the runner's own. */
  user: ChildUser | null;
  /** Told how many children wait for a uid of the range, whenever that changes (a metric). */
  onWaiting?: (waiting: number) => void;
}

/** FFMPEG_USER as written: `990:990` or `61000-61063:990`. */
export const describeUser = (u: ChildUser) => `${lastUid(u) === u.uid ? u.uid : `${u.uid}-${lastUid(u)}`}:${u.gid}`;
const lastUid = (u: ChildUser) => u.lastUid ?? u.uid;

/**
 * One media child's user, held from before its spawn until it exited and everything else of that uid is dead.
 * `uid` null: the runner's own user.
 */
export interface ChildLease {
  readonly uid: number | null;
  release(): Promise<void>;
}

// Set once when a runner starts (from its validated config), like the process-wide environment it replaces: every
// FFmpeg/ffprobe of the process is started the same way, wherever in the runner it is spawned.
let launch: ChildLaunch = { setpriv: null, user: null };
let pool: UidPool | null = null;

export function configureChildren(next: ChildLaunch): void {
  if (next.user && !next.setpriv) throw new Error("running FFmpeg as another user needs setpriv");
  launch = next;
  pool = next.user && next.setpriv && lastUid(next.user) > next.user.uid ? new UidPool(next.setpriv, next.user, next.onWaiting) : null;
  if (next.user) {
    // What FFmpeg makes is never writable by its group: with a range, another child's uid shares that group.
    const old = process.umask(0o022);
    process.umask(old | 0o022);
  }
}

export function childLaunch(): ChildLaunch {
  return launch;
}

/**
 * The user the next media child runs as. With a range of uids (FFMPEG_USER=`<first>-<last>:<gid>`) each child gets
 * a uid no other running child has, and release() kills every process of that uid before another child may use it:
 * code an upload smuggled into FFmpeg could otherwise start a process in a session of its own, which escapes both
 * the process-group stop and the parent-death signal, and keep reading and writing the work directory after the
 * encode ended (with one uid for all, there is no telling its processes from a running encode's). Waits while every
 * uid is in use; children never hold one lease while waiting for another, so a small range only serializes.
 */
export async function leaseChild(signal?: AbortSignal): Promise<ChildLease> {
  if (!pool) return { uid: launch.user?.uid ?? null, release: async () => {} };
  const p = pool;
  const uid = await p.take(signal);
  let released: Promise<void> | null = null;
  return { uid, release: () => (released ??= p.killAll(uid).then(() => p.put(uid))) };
}

/** Runs `fn` with a child's lease, released (its uid's processes killed) once `fn` settled. */
export async function withChild<T>(signal: AbortSignal | undefined, fn: (lease: ChildLease) => Promise<T>): Promise<T> {
  const lease = await leaseChild(signal);
  try {
    return await fn(lease);
  } finally {
    await lease.release();
  }
}

/**
 * Kills every process of the range's uids: what a runner killed with SIGKILL left behind (its escaped processes
 * outlive it; its direct children die with it). Called at start, before any child of this runner runs.
 */
export async function killLeftovers(): Promise<void> {
  const p = pool;
  if (!p) return;
  for (let uid = p.user.uid; uid <= lastUid(p.user); uid++) await p.killAll(uid);
}

// Shaped like the error an aborted execFile gives (code ABORT_ERR), which callers already tell apart from failures.
const abortError = (signal: AbortSignal) =>
  Object.assign(new Error("The operation was aborted", { cause: signal.reason }), { name: "AbortError", code: "ABORT_ERR" });

class UidPool {
  private readonly free: number[] = [];
  private readonly waiting: ((uid: number) => void)[] = [];
  constructor(
    private readonly setpriv: string,
    readonly user: ChildUser,
    private readonly onWaiting: (waiting: number) => void = () => {},
  ) {
    for (let uid = user.uid; uid <= lastUid(user); uid++) this.free.push(uid);
  }

  /**
   * kill(-1, SIGKILL) sent as `uid`: the kernel signals every process that uid may signal (its own, whatever their
   * session or process group) except the sender, in one pass that a fork cannot outrun. Only the runner's own PID
   * namespace is reached, so runners sharing one (not separate containers) need ranges of their own.
   */
  killAll(uid: number): Promise<void> {
    const drop = [`--reuid=${uid}`, `--regid=${this.user.gid}`, "--clear-groups", "--inh-caps=-all", "--no-new-privs"];
    return new Promise((resolve) => {
      execFile(this.setpriv, [...drop, "--", "/bin/sh", "-c", "kill -KILL -1 2>/dev/null; exit 0"], { timeout: 10_000, killSignal: "SIGKILL", env: childEnv() }, () => resolve());
    });
  }

  take(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const uid = this.free.shift();
    if (uid !== undefined) return Promise.resolve(uid);
    return new Promise((resolve, reject) => {
      const give = (u: number) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(u);
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(give);
        if (i >= 0) this.waiting.splice(i, 1);
        this.onWaiting(this.waiting.length);
        reject(abortError(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(give);
      this.onWaiting(this.waiting.length);
    });
  }

  // The uid just killed goes to the back: the processes it signalled have a moment to be gone before it is reused.
  put(uid: number): void {
    const next = this.waiting.shift();
    if (!next) return void this.free.push(uid);
    this.onWaiting(this.waiting.length);
    next(uid);
  }
}

/**
 * The command line and environment that start `bin args` as configured, as `lease`'s user (a range needs one).
 * `setpriv` execs in place: same pid.
 */
export function childCommand(bin: string, args: string[], lease?: ChildLease): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const { setpriv, user } = launch;
  if (!setpriv) return { file: bin, args, env: childEnv() };
  if (pool && (lease?.uid ?? null) === null) throw new Error("a media child needs a lease when FFMPEG_USER is a range");
  const uid = lease?.uid ?? user?.uid;
  // setpriv sets the parent-death signal after it changes the credentials (a change clears it in the kernel).
  const drop = user
    ? [`--reuid=${uid}`, `--regid=${user.gid}`, "--clear-groups", "--inh-caps=-all", "--no-new-privs"]
    : [];
  return { file: setpriv, args: [...drop, "--pdeathsig", "SIGKILL", "--", bin, ...args], env: childEnv() };
}

/** Runs `bin args` as a media child (as configured) and waits for it; its exit status is the answer. */
export function runChild(bin: string, args: string[], timeoutMs: number): Promise<{ code: number; stderr: string }> {
  return withChild(undefined, (lease) => {
    const cmd = childCommand(bin, args, lease);
    return new Promise((resolve) => {
      execFile(cmd.file, cmd.args, { timeout: timeoutMs, killSignal: "SIGKILL", env: cmd.env }, (err, _stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
        resolve({ code, stderr: String(stderr) || (err ? err.message : "") });
      });
    });
  });
}
