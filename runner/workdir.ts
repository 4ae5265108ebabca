import { chmod, chown, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
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
 * Takes this runner's own directory under WORK_DIR (`WORK_DIR/runner-<id>/`, created and marked here) and empties
 * it: nothing is in hand at start. Also removes the marked directories of runners that ran on this host and are
 * dead (a restart with a new pid, hence a new default id) once their marks are quiet (PREDECESSOR_QUIET_MS; a
 * fresher one goes with removeAbandonedWorkDirs a few minutes later), so a crash never leaves files behind for good.
 * WORK_DIR itself may be shared (even `/tmp`): only marked directories are touched.
 */
export async function claimWorkDir(root: string, runnerId: string, log: Logger, ffmpegGid: number | null = null): Promise<string> {
  await mkdir(root, { recursive: true });
  const own = ownWorkDir(root, runnerId);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith("runner-")) continue;
    const dir = join(root, name);
    const mark = await readMark(dir);
    if (!mark) continue;
    const here = mark.host === hostname();
    if (dir === own && here && mark.pid !== process.pid && alive(mark.pid)) {
      // Two live runners with one RUNNER_ID would hand back each other's work every tick: refuse to start.
      throw new DuplicateRunnerError(`RUNNER_ID ${runnerId} is already used by a live runner (pid ${mark.pid}) on this host`);
    }
    // Same pid as ours = a previous life of this very container, or a neighbour container's live runner: the
    // mark's quiet tells them apart.
    const predecessor = dir === own || (looksLikePredecessor(mark) && Date.now() - (await markedAt(dir)) >= PREDECESSOR_QUIET_MS);
    if (!predecessor) continue;
    await rm(dir, { recursive: true, force: true }).catch((err) =>
      log.warn("could not remove a previous runner's work files", { dir: name, error: errorMessage(err) }),
    );
    if (dir !== own) log.info("removed the work files of a runner that is gone", { dir: name, runner: mark.runnerId });
  }
  await mkdir(own, { recursive: true });
  // Shared with FFmpeg's group only (FFMPEG_USER): it reads the sources and writes the outputs the runner handles.
  // The set-group-id bit gives every job directory and file made beneath it that group; nobody else gets in.
  if (ffmpegGid !== null) await chown(own, process.getuid?.() ?? 0, ffmpegGid);
  await chmod(own, SHARED_DIR_MODE);
  const mark: Mark = { host: hostname(), pid: process.pid, runnerId };
  await writeFile(join(own, MARKER), JSON.stringify(mark));
  return own;
}

const SHARED_DIR_MODE = 0o2770;

/** A job's directory under the runner's own, writable by FFmpeg's group (mkdir alone would leave it 755). */
export async function makeJobDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, SHARED_DIR_MODE);
}

/** A live runner touches its mark every MARK_TOUCH_MS; a mark untouched this long belongs to a runner that is gone. */
export const ABANDONED_MARK_MS = 60 * 60_000;
export const MARK_TOUCH_MS = 60_000;

/** Tells other runners sharing WORK_DIR that this one is alive (every tick, whether the database answers or not). */
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
    try {
      await rm(dir, { recursive: true, force: true });
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
  const mark = await readMark(own);
  if (!mark || mark.host !== hostname() || mark.pid !== process.pid || mark.runnerId !== runnerId) return;
  await rm(own, { recursive: true, force: true }).catch((err) =>
    log.warn("could not remove the work files at shutdown", { error: errorMessage(err) }),
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
  let removed = 0;
  for (const name of await readdir(own).catch(() => [] as string[])) {
    if (name === MARKER || keepJobIds.has(name)) continue;
    await rm(join(own, name), { recursive: true, force: true });
    removed++;
  }
  if (removed) log.info("swept local work files", { entries: removed });
  return removed;
}
