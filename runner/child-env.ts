import { execFile } from "node:child_process";
import { constants, readFileSync } from "node:fs";
import { open, rmdir, unlink } from "node:fs/promises";
import { UidPool } from "./uid-pool";

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
  /**
   * With `user`: the most processes and threads one run may have (RLIMIT_NPROC, set by util-linux `prlimit`). The
   * kernel counts them per uid, host-wide, zombies included: with a range each run has its uid to itself, with one
   * uid every child of the runner shares it (`perRun × sharedBy`). Without `user` it would count the runner's own
   * processes (or nothing, for root), so it is not applied.
   */
  nproc?: { prlimit: string; perRun: number; sharedBy: number };
  /** Told how many children wait for a uid of the range, whenever that changes (a metric). */
  onWaiting?: (waiting: number) => void;
  /** A uid of the range whose processes could not be killed; it is never handed out again. */
  onQuarantine?: (uid: number, survivors: number[]) => void;
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
/** The RLIMIT_NPROC every media child gets, or null for none. */
let nprocMax: number | null = null;

/**
 * Sets how every media child is started. Answers the process limit each run gets (null: none) and the one asked
 * for, which is more when the runner's own hard limit is lower.
 */
export function configureChildren(next: ChildLaunch): { nproc: number | null; nprocAsked: number | null } {
  if (next.user && !next.setpriv) throw new Error("running FFmpeg as another user needs setpriv");
  launch = next;
  pool = next.user && lastUid(next.user) > next.user.uid
    ? new UidPool({ uid: next.user.uid, lastUid: lastUid(next.user) }, { onWaiting: next.onWaiting, onQuarantine: next.onQuarantine })
    : null;
  // Never above the runner's own hard limit: raising it needs CAP_SYS_RESOURCE (not among Docker's defaults), and
  // prlimit would refuse, failing every child.
  const asked = next.user && next.nproc ? next.nproc.perRun * (pool ? 1 : next.nproc.sharedBy) : null;
  nprocMax = asked === null ? null : Math.min(asked, ownHardNproc());
  if (next.user) {
    // Nothing FFmpeg makes is writable by its group (the other uids of a range share it).
    const old = process.umask(0o022);
    process.umask(old | 0o022);
  }
  return { nproc: nprocMax, nprocAsked: asked };
}

/** This process's hard RLIMIT_NPROC (Infinity when unlimited or unreadable: not Linux). */
function ownHardNproc(): number {
  try {
    const hard = /^Max processes\s+\S+\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1];
    return hard && /^\d+$/.test(hard) ? Number(hard) : Infinity;
  } catch {
    return Infinity;
  }
}

export function childLaunch(): ChildLaunch {
  return launch;
}

/**
 * The user the next media child runs as, with the files it will write (`writes`) made ready for it. With a range of
 * uids (runner/uid-pool.ts) each child gets a uid no other running child has, and release() kills every process
 * of that uid before another child may use it. Waits while every uid is in use; children never hold one lease
 * while waiting for another, so a small range only serializes.
 *
 * With FFMPEG_USER, the runner (root) creates each file the child will write, exclusively, owned by the child's uid
 * and mode 0600, and when the child is done seals it (root's, group-readable) or removes it when nothing was
 * written. So nobody else can have made the name first (another upload's run could otherwise create an encode's
 * output name in `out/`, let the encode write into its file and rewrite it afterwards), no run beside it can write
 * into it, and no later run of the same uid can change it.
 */
export async function leaseChild(signal?: AbortSignal, writes: readonly string[] = []): Promise<ChildLease> {
  const user = launch.user;
  if (!user) return { uid: null, release: async () => {} };
  const p = pool;
  const uid = p ? await p.take(signal) : user.uid;
  // Killed first (nothing of that uid may still hold a file open for writing when it is sealed), sealed before the
  // uid is anybody else's.
  const release = () => (p ? p.release(uid, () => sealWrites(writes, uid, user.gid)) : sealWrites(writes, uid, user.gid));
  try {
    for (const path of writes) await prepareWrite(path, uid, user.gid);
  } catch (err) {
    await release().catch(() => {});
    throw err;
  }
  let released: Promise<void> | null = null;
  return { uid, release: () => (released ??= release()) };
}

/** Uids of FFMPEG_USER's range that may still run a child (none: this runner can run no FFmpeg); null without a range. */
export const childUidsLeft = (): number | null => pool?.usable ?? null;

/** Runs `fn` with a child's lease (see leaseChild), released once `fn` settled. */
export async function withChild<T>(
  signal: AbortSignal | undefined,
  fn: (lease: ChildLease) => Promise<T>,
  writes: readonly string[] = [],
): Promise<T> {
  const lease = await leaseChild(signal, writes);
  try {
    return await fn(lease);
  } finally {
    await lease.release();
  }
}

/** Kills what a previous life of this runner left running as the range's uids (its direct children died with it). */
export async function killLeftovers(): Promise<number[]> {
  return (await pool?.clearAll()) ?? [];
}

/** A file a child could not be given to write (something stands at its name that root cannot replace). */
export class ChildWriteError extends Error {}

async function prepareWrite(path: string, uid: number, gid: number): Promise<void> {
  try {
    // Whatever stands there (another run's file, a symlink) goes first; root may remove anything in `out/`.
    await unlink(path).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return;
      // An empty directory another run made there goes too; one with something in it stays (the run fails).
      if (err.code === "EISDIR") return await rmdir(path);
      throw err;
    });
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.chown(uid, gid);
    } finally {
      await fh.close();
    }
  } catch (err) {
    // The errno stays (a full disk is this machine's trouble like any other: runner/local-errors.ts).
    throw Object.assign(new ChildWriteError(`cannot make ${path} ready for FFmpeg: ${(err as Error).message}`), { code: (err as NodeJS.ErrnoException).code });
  }
}

async function sealWrites(paths: readonly string[], uid: number, gid: number): Promise<void> {
  for (const path of paths) {
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => null);
    if (!fh) continue;
    try {
      const st = await fh.stat();
      // Anything else at the name (the child's own doing) is left for openRegularFile to refuse.
      if (!st.isFile() || st.uid !== uid) continue;
      if (st.size === 0) {
        // Nothing written (the child failed early): no file, as before it was made ready.
        await unlink(path).catch(() => {});
        continue;
      }
      await fh.chown(process.getuid?.() ?? 0, gid);
      await fh.chmod(0o640);
    } finally {
      await fh.close();
    }
  }
}

/**
 * The command line and environment that start `bin args` as configured, as `lease`'s user (a range needs one).
 * `setpriv` execs in place: same pid.
 */
export function childCommand(bin: string, args: string[], lease?: ChildLease): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const { setpriv, user, nproc } = launch;
  if (!setpriv) return { file: bin, args, env: childEnv() };
  if (pool && (lease?.uid ?? null) === null) throw new Error("a media child needs a lease when FFMPEG_USER is a range");
  const uid = lease?.uid ?? user?.uid;
  // setpriv sets the parent-death signal after it changes the credentials (a change clears it in the kernel).
  const drop = user
    ? [`--reuid=${uid}`, `--regid=${user.gid}`, "--clear-groups", "--inh-caps=-all", "--no-new-privs"]
    : [];
  const run = [...drop, "--pdeathsig", "SIGKILL", "--", bin, ...args];
  // prlimit and setpriv both exec in place (same pid: the stop sequence and the uid's kill still reach FFmpeg). The
  // kernel checks the limit at every fork and thread the child starts, against everything its uid has on the host:
  // a refused thread fails the run as the runner's trouble (EAGAIN, runner/local-errors.ts), never the video's.
  if (nproc && nprocMax !== null) return { file: nproc.prlimit, args: [`--nproc=${nprocMax}`, "--", setpriv, ...run], env: childEnv() };
  return { file: setpriv, args: run, env: childEnv() };
}

/** Runs `bin args` as a media child (as configured) and waits for it; its exit status is the answer. */
export function runChild(bin: string, args: string[], timeoutMs: number, writes: string[] = []): Promise<{ code: number; stderr: string }> {
  return withChild(undefined, (lease) => {
    const cmd = childCommand(bin, args, lease);
    return new Promise((resolve) => {
      execFile(cmd.file, cmd.args, { timeout: timeoutMs, killSignal: "SIGKILL", env: cmd.env }, (err, _stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
        resolve({ code, stderr: String(stderr) || (err ? err.message : "") });
      });
    });
  }, writes);
}
