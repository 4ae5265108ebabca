import { constants } from "node:fs";
import { chmod, chown, lstat, mkdir, open, readdir, readFile, rm, stat, utimes, writeFile, type FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { spawn } from "node:child_process";
import { childEnv, childLaunch, describeUser, runChild } from "./child-env";
import { errorMessage, type Logger } from "./log";

/** Another live process on this host runs with the same RUNNER_ID. Not worth retrying. */
export class DuplicateRunnerError extends Error {}

/** The file that marks a directory as one runner's own scratch space; nothing else is ever deleted. */
export const MARKER = ".video-refresher-runner";

interface Mark {
  host: string;
  pid: number;
  runnerId: string;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** This runner's own directory under WORK_DIR. */
export const ownWorkDir = (root: string, runnerId: string) => join(root, `runner-${runnerId.replace(/[^A-Za-z0-9._-]/g, "_")}`);

/** When the mark of a directory under WORK_DIR was last touched (0 when it cannot be read). */
const markedAt = (dir: string) => stat(join(dir, MARKER)).then((s) => s.mtimeMs, () => 0);

/**
 * A mark of this host whose pid is ours or not alive looks like a predecessor's, but a container beside this one on
 * host networking shares the hostname, has pids of its own namespace (tini's child: often ours) and may share the
 * WORK_DIR volume: its runner is alive. Only a mark nobody touched for this long (a live runner touches its own every
 * MARK_TOUCH_MS) is a predecessor's; removing a live neighbour's directory failed its encodes for good.
 */
export const PREDECESSOR_QUIET_MS = 3 * 60_000;

/** A mark of this host that a dead runner left: its pid is ours (a previous life of this container) or gone. */
const looksLikePredecessor = (mark: Mark) => mark.host === hostname() && (mark.pid === process.pid || !alive(mark.pid));

/**
 * Refuses to start when a live process on this host already runs with this RUNNER_ID (its mark in our directory
 * names it). Only reads: the runner calls it before anything it does at start can touch the live runner's work —
 * killing a previous life's leftovers (runner/child-env.ts) would otherwise SIGKILL the live runner's FFmpeg first.
 */
export async function refuseDuplicateRunner(root: string, runnerId: string): Promise<void> {
  refuseLiveTwin(await readMark(ownWorkDir(root, runnerId)), runnerId);
}

/** Two live runners with one RUNNER_ID would hand back each other's work every tick: refuse to start. */
function refuseLiveTwin(mark: Mark | null | undefined, runnerId: string): void {
  if (mark && mark.host === hostname() && mark.pid !== process.pid && alive(mark.pid)) {
    throw new DuplicateRunnerError(`RUNNER_ID ${runnerId} is already used by a live runner (pid ${mark.pid}) on this host`);
  }
}

/**
 * Takes this runner's own directory under WORK_DIR (`WORK_DIR/runner-<id>/`, created and marked here) and empties
 * it: nothing is in hand at start. Also removes the marked directories of runners that ran on this host and are
 * dead (a restart with a new pid, hence a new default id) once their marks are quiet (PREDECESSOR_QUIET_MS; a
 * fresher one goes with removeAbandonedWorkDirs a few minutes later), so a crash never leaves files behind for good.
 * WORK_DIR itself may be shared (even `/tmp`): only marked directories are touched.
 */
export async function claimWorkDir(root: string, runnerId: string, log: Logger): Promise<string> {
  await mkdir(root, { recursive: true });
  await refuseUnlessOwnDir(root, root, true);
  const own = ownWorkDir(root, runnerId);
  // Before the predecessor pass below, which empties `own` when it holds this runner's mark.
  await refuseUnlessOwnDir(own, root, false);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith("runner-")) continue;
    const dir = join(root, name);
    const mark = await readMark(dir);
    if (!mark) continue;
    const here = mark.host === hostname();
    // As refuseDuplicateRunner, again: a twin may have marked the directory since.
    if (dir === own) refuseLiveTwin(mark, runnerId);
    // Same pid as ours = a previous life of this very container, or a neighbour container's live runner: the
    // mark's quiet tells them apart.
    const predecessor = dir === own || (looksLikePredecessor(mark) && Date.now() - (await markedAt(dir)) >= PREDECESSOR_QUIET_MS);
    if (!predecessor) continue;
    await removeTree(dir).catch((err) =>
      log.warn("could not remove a previous runner's work files", { dir: name, error: errorMessage(err) }),
    );
    if (dir !== own) log.info("removed the work files of a runner that is gone", { dir: name, runner: mark.runnerId });
  }
  await mkdir(own, { recursive: true });
  // Again after mkdir, which takes whatever directory or link to one stands at the name; the identity is what every
  // later sweep must find there.
  claimedDirs.set(own, (await refuseUnlessOwnDir(own, root, false))!);
  // Shared with FFmpeg's group only (FFMPEG_USER), searchable but neither listable nor writable: the set-group-id
  // bit gives every directory and file made beneath it that group; nobody else gets in. See makeJobDir for where
  // FFmpeg may write.
  const ffmpegGid = childLaunch().user?.gid;
  if (ffmpegGid !== undefined) {
    await chown(own, process.getuid?.() ?? 0, ffmpegGid).catch((err: Error) => {
      throw new FfmpegUserError(`cannot give the work directory to FFMPEG_USER's group ${ffmpegGid}: ${err.message}`);
    });
    await chmod(own, READ_ONLY_DIR);
  }
  const mark: Mark = { host: hostname(), pid: process.pid, runnerId };
  await writeFile(join(own, MARKER), JSON.stringify(mark));
  return own;
}

/** A directory's identity: another directory, or a link, put at the same name later has another one. */
interface DirId {
  dev: bigint;
  ino: bigint;
}

/** The identity of each directory claimWorkDir took, by path. */
const claimedDirs = new Map<string, DirId>();

/**
 * The runner (root, beside FFMPEG_USER) chowns and empties its own directory: a local user who could put a symlink
 * there, or in a WORK_DIR they may write into, would have it chown and empty any directory, /etc included. So
 * WORK_DIR and the runner's directory must be real directories of the runner's user or root, and a WORK_DIR others
 * may write into must be sticky (nobody else can then rename or remove the runner's directory in it). WORK_DIR
 * itself may be a link the operator made (onto a bigger disk) while nobody else can replace it: a link of the
 * runner's user or root, in a directory others cannot write into (or a sticky one); its target is checked as
 * WORK_DIR. Returns the directory's identity, or null when it does not exist yet.
 */
async function refuseUnlessOwnDir(path: string, root: string, isRoot: boolean): Promise<DirId | null> {
  let st = await lstat(path, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return null;
    throw err;
  });
  if (!st) return null;
  const refuse = (why: string) => new WorkDirError(`cannot use WORK_DIR ${root}: ${isRoot ? "it" : `the runner's directory ${path}`} ${why}`);
  const uid = process.getuid?.();
  const ours = (s: { uid: bigint }) => uid === undefined || s.uid === BigInt(uid) || s.uid === 0n;
  const othersMayReplace = (s: { mode: bigint }) => (s.mode & 0o022n) !== 0n && (s.mode & 0o1000n) === 0n;
  if (st.isSymbolicLink()) {
    if (!isRoot) throw refuse("is a symbolic link (remove it: the runner makes its own)");
    if (!ours(st)) throw refuse(`is a symbolic link of uid ${st.uid}, neither the runner's (${uid}) nor root's`);
    if (othersMayReplace(await lstat(dirname(path), { bigint: true }))) {
      throw refuse("is a symbolic link in a directory other users may write into (point WORK_DIR at the real directory)");
    }
    st = await stat(path, { bigint: true });
  }
  if (!st.isDirectory()) throw refuse("is not a directory");
  if (!ours(st)) throw refuse(`belongs to uid ${st.uid}, neither the runner's (${uid}) nor root's`);
  if (isRoot && othersMayReplace(st)) throw refuse("may be written by other users but has no sticky bit (chmod o-w,g-w or chmod +t)");
  return { dev: st.dev, ino: st.ino };
}

/**
 * Whether `own` is still the directory claimWorkDir took, and no link or other directory put at its name since:
 * the sweeps remove whatever they find in it.
 */
async function stillClaimed(own: string, log: Logger): Promise<boolean> {
  const id = claimedDirs.get(own);
  const st = await lstat(own, { bigint: true }).catch(() => null);
  if (id && st?.isDirectory() && st.dev === id.dev && st.ino === id.ino) return true;
  log.error("the runner's work directory is not the one it claimed (replaced, or a symbolic link): nothing removed there", { dir: own });
  return false;
}

// Searchable, not listable, by FFmpeg's group: a run opens its files by the full paths the runner gives it, and a
// run on another runner sharing the volume cannot list the job directories there to find other jobs' `out/`.
const READ_ONLY_DIR = 0o2710;
// Sticky: with a range of FFMPEG_USER uids, a child may remove or rename only the files of its own uid, so no other
// encode running beside it can swap a finished output (the runner's umask keeps them from writing into one).
const WRITABLE_DIR = 0o3770;

/** The subdirectory of a job's directory where FFmpeg writes (outputs, thumbnail, sample files being made). */
export const FFMPEG_OUT = "out";

/**
 * A job's directory under the runner's own, and its `out/` for FFmpeg. With FFMPEG_USER, FFmpeg runs as another
 * user than the runner (root) and may be running code an upload smuggled in: it can open the job's files by path but
 * write only in `out/` (outputs, thumbnail, the source's sample file). So nothing it makes can stand where the runner
 * writes (the source download), every file of `out/` the runner reads is opened with openRegularFile (no symlink,
 * no FIFO), nothing of `out/` is moved out of it, and `out/` is removed with removeTree.
 */
export async function makeJobDir(dir: string): Promise<void> {
  await mkdir(join(dir, FFMPEG_OUT), { recursive: true });
  // Modes only matter to another user; left alone otherwise (a filesystem that refuses chmod still works).
  if (!childLaunch().user) return;
  await chmod(dir, READ_ONLY_DIR);
  await chmod(join(dir, FFMPEG_OUT), WRITABLE_DIR);
}

/** WORK_DIR cannot be used (created, marked, given its modes). Not worth retrying as if the database were down. */
export class WorkDirError extends Error {}

/**
 * Opens a file FFmpeg wrote for reading, refusing anything but a regular file: under FFMPEG_USER it could have
 * replaced its output with a symlink to a file only the runner may read (the runner would upload it as a video), or
 * with a FIFO that blocks the runner's read forever.
 */
export async function openRegularFile(path: string): Promise<FileHandle> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    // One link only: a hard link FFmpeg's user made to a file it may not read (where the kernel allows that).
    const st = await fh.stat();
    if (!st.isFile() || st.nlink !== 1) throw Object.assign(new Error(`not a regular file of its own: ${path}`), { code: "EINVAL" });
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** A live runner touches its mark every MARK_TOUCH_MS; a mark untouched this long belongs to a runner that is gone. */
export const ABANDONED_MARK_MS = 60 * 60_000;
export const MARK_TOUCH_MS = 60_000;

/** Tells other runners sharing WORK_DIR that this one is alive (every MARK_TOUCH_MS on a timer of its own, whatever its ticks or database do). */
export async function touchWorkDir(own: string, now: number): Promise<void> {
  await utimes(join(own, MARKER), now / 1000, now / 1000);
}

/**
 * Removes the marked directories of runners that are gone for good, whichever host they ran on: the mark was not
 * touched for ABANDONED_MARK_MS (a live runner touches it every minute, even while its database is unreachable,
 * and whatever database it uses) and the runner id is not `registered` either (deregistered at shutdown, or never
 * seen for a day and pruned by the edge). A dead predecessor on this host (see claimWorkDir) goes once its mark is
 * quiet for PREDECESSOR_QUIET_MS, registered or not (a crashed runner's row stays for a day). Why: a WORK_DIR volume outlives containers, and a recreated container has
 * a new hostname, so claimWorkDir never sees a predecessor that was killed there as its own; its cached sources
 * would fill the volume for good.
 */
export async function removeAbandonedWorkDirs(
  root: string,
  own: string,
  registered: (runnerId: string) => boolean,
  now: number,
  log: Logger,
): Promise<number> {
  let removed = 0;
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const dir = join(root, name);
    if (!name.startsWith("runner-") || dir === own) continue;
    const mark = await readMark(dir);
    if (!mark) continue;
    const quietMs = now - ((await markedAt(dir)) || now);
    const predecessor = looksLikePredecessor(mark) && quietMs >= PREDECESSOR_QUIET_MS;
    if (!predecessor && (registered(mark.runnerId) || quietMs < ABANDONED_MARK_MS)) continue;
    // Looked at again right before it goes: a runner restarting with a fixed RUNNER_ID may have taken the directory
    // over (a fresh mark) while the checks above awaited.
    const again = await readMark(dir);
    if (!again || JSON.stringify(again) !== JSON.stringify(mark) || now - ((await markedAt(dir)) || now) < quietMs) continue;
    try {
      await removeTree(dir);
      removed++;
      log.info("removed the work files of a runner that is gone", { dir: name, runner: mark.runnerId });
    } catch (err) {
      log.warn("could not remove a gone runner's work files", { dir: name, error: errorMessage(err) });
    }
  }
  return removed;
}

/**
 * Removes this runner's own directory at the end of a graceful shutdown (nothing is in hand any more): the next
 * process has another runner id, so its cached sources would otherwise stay on a shared volume. Only while the mark
 * is still this process's: with a fixed RUNNER_ID, a successor on another host may already have taken it over.
 */
export async function releaseWorkDir(own: string, runnerId: string, log: Logger): Promise<void> {
  if (!(await stillClaimed(own, log))) return;
  const mark = await readMark(own);
  if (!mark || mark.host !== hostname() || mark.pid !== process.pid || mark.runnerId !== runnerId) return;
  await removeTree(own).then(
    () => claimedDirs.delete(own),
    (err) => log.warn("could not remove the work files at shutdown", { error: errorMessage(err) }),
  );
}

async function readMark(dir: string): Promise<Mark | null> {
  try {
    const m = JSON.parse(await readFile(join(dir, MARKER), "utf8")) as Partial<Mark>;
    return typeof m.host === "string" && typeof m.pid === "number" && typeof m.runnerId === "string" ? (m as Mark) : null;
  } catch {
    return null;
  }
}

/**
 * Removes local files in the runner's own directory that belong to no variation in hand. Layout: <own>/<jobId>/…,
 * so anything not under a job in `keepJobIds` goes, except the marker.
 */
export async function sweepWorkDir(own: string, keepJobIds: Set<string>, log: Logger): Promise<number> {
  if (!(await stillClaimed(own, log))) return 0;
  let removed = 0;
  for (const name of await readdir(own).catch(() => [] as string[])) {
    if (name === MARKER || keepJobIds.has(name)) continue;
    try {
      await removeTree(join(own, name));
      removed++;
    } catch (err) {
      log.warn("could not remove local work files (the next sweep tries again)", { entry: name, error: errorMessage(err) });
    }
  }
  if (removed) log.info("swept local work files", { entries: removed });
  return removed;
}

/** FFmpeg cannot run as FFMPEG_USER, or cannot work in the runner's directory as that user. Not worth retrying. */
export class FfmpegUserError extends Error {}

// A 16×16 gray image: what the start-up check has FFmpeg read, as it reads the sources the runner downloads.
const CHECK_IMAGE = Buffer.concat([Buffer.from("P5\n16 16\n255\n"), Buffer.alloc(256, 128)]);

/**
 * Start-up check with FFMPEG_USER: FFmpeg, started as every encode is, reads a file the runner wrote in a job
 * directory and writes one in its `out/`. It fails when setpriv cannot switch user (no CAP_SETUID/CAP_SETGID), when
 * WORK_DIR or a parent is not searchable by that user, or when the runner's umask keeps its group from reading:
 * better a runner that refuses to start than one whose every encode fails.
 */
export async function checkFfmpegUser(ffmpeg: string, own: string): Promise<void> {
  const { user } = childLaunch();
  if (!user) return;
  const dir = join(own, ".ffmpeg-user-check");
  try {
    await makeJobDir(dir);
    await writeFile(join(dir, "in.pgm"), CHECK_IMAGE).catch((err: Error) => {
      throw new FfmpegUserError(`cannot prepare the FFMPEG_USER check in ${own}: ${err.message}`);
    });
    const out = join(dir, FFMPEG_OUT, "out.png");
    const args = ["-hide_banner", "-nostdin", "-loglevel", "error", "-i", join(dir, "in.pgm"), "-frames:v", "1", "-y", out];
    const { code, stderr } = await runChild(ffmpeg, args, 30_000, [out]).catch((err: Error) => {
      // Root could not give the file to that user (no CAP_CHOWN, a filesystem that refuses chown).
      throw new FfmpegUserError(`cannot prepare the FFMPEG_USER check in ${own}: ${err.message}`);
    });
    if (code !== 0) {
      const why = stderr.trim().split("\n").pop() || `exit ${code}`;
      throw new FfmpegUserError(
        `FFmpeg cannot work as FFMPEG_USER ${describeUser(user)} in ${own} (${why}); WORK_DIR and its parents must be searchable by that user, and the runner's umask must let its group read`,
      );
    }
  } finally {
    await removeTree(dir).catch(() => {});
  }
}

/**
 * Removes a runner's directory or a job's directory. With FFMPEG_USER, each job's `out/` (FFmpeg's, see makeJobDir)
 * goes first, through coreutils `rm`, whose walk holds each directory open and checks every step: FFmpeg's user can
 * swap a directory of `out/` for a symlink while root walks it, and Node's fs.rm, which walks by path, then deletes
 * wherever the link points (a review reproduced it: most of a root-only directory gone). Throws when an `out/` could
 * not be removed (something of that user still writing there); a later sweep tries again. The rest of the tree is
 * root's own (2710: nothing of FFmpeg's in it).
 */
export async function removeTree(path: string): Promise<void> {
  if (childLaunch().user) {
    for (const out of await outDirsUnder(path)) {
      const why = await removeWithCoreutils(out);
      if (why !== null) throw Object.assign(new Error(`could not remove ${out}: ${why}`), { code: "ENOTEMPTY" });
    }
  }
  await rm(path, { recursive: true, force: true });
}

/** `rm -rf --one-file-system -- dir` as the runner: null when it succeeded, else the last line it printed. */
function removeWithCoreutils(dir: string): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn("rm", ["-rf", "--one-file-system", "--", dir], { stdio: ["ignore", "ignore", "pipe"], env: childEnv() });
    let tail = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => (tail = (tail + d).slice(-2000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("error", (err) => (clearTimeout(timer), resolve(err.message)));
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve(code === 0 ? null : tail.trim().split("\n").pop() || `rm ended ${signal ?? `with ${code}`}`);
    });
  });
}

/** The `out/` of a job's directory, or of each job's directory in a runner's directory (no symlink followed). */
async function outDirsUnder(path: string): Promise<string[]> {
  const isDir = (p: string) => lstat(p).then((s) => s.isDirectory(), () => false);
  if (await isDir(join(path, FFMPEG_OUT))) return [join(path, FFMPEG_OUT)];
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  const outs = entries.filter((e) => e.isDirectory()).map((e) => join(path, e.name, FFMPEG_OUT));
  return (await Promise.all(outs.map(async (o) => ((await isDir(o)) ? o : null)))).filter((o): o is string => o !== null);
}
