import { execFile, spawn } from "node:child_process";
import { chmod, chown, mkdir, readdir, readFile, rename, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { childCommand, configureChildren, leaseChild, type ChildLease } from "../../runner/child-env";
import { resolveExecutable } from "../../runner/config";
import { createLogger } from "../../runner/log";
import { ffmpegRun } from "../../runner/samples";
import {
  ABANDONED_MARK_MS,
  claimWorkDir,
  DuplicateRunnerError,
  FFMPEG_OUT,
  makeJobDir,
  MARKER,
  openRegularFile,
  ownWorkDir,
  PREDECESSOR_QUIET_MS,
  releaseWorkDir,
  removeAbandonedWorkDirs,
  removeTree,
  sweepWorkDir,
  touchWorkDir,
  WorkDirError,
} from "../../runner/workdir";
import { filesUnder } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { tempDirs } from "../helpers/tmp";

const execFileP = promisify(execFile);

const dirs = tempDirs("vr-workdir-test");
afterAll(() => dirs.cleanup());
const log = createLogger({ level: "error" });

/** A pid that existed and is gone now (a child that has exited and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn("true");
  await new Promise((r) => child.once("exit", r));
  return child.pid!;
}

/** Makes a directory's mark look untouched since PREDECESSOR_QUIET_MS and a minute. */
async function quiet(dir: string): Promise<void> {
  const t = (Date.now() - PREDECESSOR_QUIET_MS - 60_000) / 1000;
  await utimes(join(dir, MARKER), t, t);
}

async function markedDir(root: string, name: string, mark: object, file = "left.part.mp4"): Promise<string> {
  const dir = join(root, name);
  await mkdir(join(dir, "job"), { recursive: true });
  await writeFile(join(dir, MARKER), JSON.stringify(mark));
  await writeFile(join(dir, "job", file), "x");
  return dir;
}

describe("the runner's own WORK_DIR", () => {
  it("deletes nothing in a shared WORK_DIR but directories marked as runners', so WORK_DIR=/tmp is safe", async () => {
    const root = await dirs.make();
    await writeFile(join(root, "someone-elses.txt"), "keep me");
    await mkdir(join(root, "runner-looks-like-ours-but-unmarked"));
    await writeFile(join(root, "runner-looks-like-ours-but-unmarked", "data"), "keep me too");
    const own = await claimWorkDir(root, "r1", log);
    expect(own).toBe(ownWorkDir(root, "r1"));
    expect((await readdir(root)).sort()).toEqual(["runner-looks-like-ours-but-unmarked", "runner-r1", "someone-elses.txt"]);
    expect(await filesUnder(root)).toEqual(expect.arrayContaining(["someone-elses.txt", "runner-looks-like-ours-but-unmarked/data"]));
  });

  it("removes what a dead predecessor on this host left (a restart with a new pid), but not a live neighbour's files", async () => {
    const root = await dirs.make();
    await quiet(await markedDir(root, "runner-old", { host: hostname(), pid: await deadPid(), runnerId: "old" }));
    await markedDir(root, "runner-neighbour", { host: hostname(), pid: process.ppid, runnerId: "neighbour" });
    await markedDir(root, "runner-elsewhere", { host: "another-host", pid: await deadPid(), runnerId: "elsewhere" });
    await claimWorkDir(root, "new", log);
    expect((await readdir(root)).sort()).toEqual(["runner-elsewhere", "runner-neighbour", "runner-new"]);
    expect(await filesUnder(join(root, "runner-neighbour"))).toEqual(["job/left.part.mp4"]);
  });

  it("keeps the directory of a runner in a neighbour container on host networking (same hostname, a pid that is ours or not alive here) while its mark is fresh, and removes it once quiet", async () => {
    const root = await dirs.make();
    const samePid = await markedDir(root, "runner-neighbour-a", { host: hostname(), pid: process.pid, runnerId: "neighbour-a" });
    const otherNs = await markedDir(root, "runner-neighbour-b", { host: hostname(), pid: await deadPid(), runnerId: "neighbour-b" });
    const own = await claimWorkDir(root, "me", log);
    expect(await filesUnder(samePid)).toEqual(["job/left.part.mp4"]);
    expect(await filesUnder(otherNs)).toEqual(["job/left.part.mp4"]);
    // Still registered (a crashed runner's row stays for a day), but nobody touched the marks for minutes: gone.
    expect(await removeAbandonedWorkDirs(root, own, () => true, Date.now() + PREDECESSOR_QUIET_MS + 1000, log)).toBe(2);
    expect(await readdir(root)).toEqual(["runner-me"]);
  });

  it("refuses to start when a live process on this host already runs with the same RUNNER_ID", async () => {
    const root = await dirs.make();
    const twin = await markedDir(root, "runner-twin", { host: hostname(), pid: process.ppid, runnerId: "twin" });
    await expect(claimWorkDir(root, "twin", log)).rejects.toBeInstanceOf(DuplicateRunnerError);
    expect(await filesUnder(twin)).toEqual(["job/left.part.mp4"]);
  });

  it("takes over the directory of its own previous life in the same container (same pid, another id, a quiet mark)", async () => {
    const root = await dirs.make();
    await quiet(await markedDir(root, "runner-before-restart", { host: hostname(), pid: process.pid, runnerId: "before-restart" }));
    await claimWorkDir(root, "after-restart", log);
    expect(await readdir(root)).toEqual(["runner-after-restart"]);
  });

  it("empties its own directory at start (same runner id restarted) and keeps the jobs still in hand when idle-sweeping", async () => {
    const root = await dirs.make();
    const own = await markedDir(root, "runner-same", { host: hostname(), pid: process.pid, runnerId: "same" });
    await claimWorkDir(root, "same", log);
    expect(await filesUnder(own)).toEqual([]);
    await mkdir(join(own, "busy"));
    await writeFile(join(own, "busy", "src"), "x");
    await mkdir(join(own, "done"));
    await writeFile(join(own, "done", "src"), "x");
    expect(await sweepWorkDir(own, new Set(["busy"]), log)).toBe(1);
    expect(await filesUnder(own)).toEqual(["busy/src"]);
    expect(await readdir(own)).toContain(MARKER);
  });

  it("removes the directory of a runner gone for good on any host (mark untouched for an hour, no runner row), keeping live ones whatever their database", async () => {
    const root = await dirs.make();
    const now = Date.now();
    const markedAgo = async (dir: string, ms: number) => utimes(join(dir, MARKER), (now - ms) / 1000, (now - ms) / 1000);
    // A container recreated on upgrade (new hostname) or killed: its runner row is gone, its files are not.
    await markedAgo(await markedDir(root, "runner-killed", { host: "old-container", pid: 7, runnerId: "killed" }), ABANDONED_MARK_MS + 60_000);
    // Registered in our database, though its mark is old (it could not touch it, say).
    await markedAgo(await markedDir(root, "runner-busy", { host: "other-container", pid: 7, runnerId: "busy" }), 3 * ABANDONED_MARK_MS);
    // Alive (touched its mark a minute ago) but unknown to our database: another deployment's runner, or one that
    // has just started and not registered yet.
    const elsewhere = await markedDir(root, "runner-elsewhere", { host: "staging-box", pid: 7, runnerId: "elsewhere" });
    await markedAgo(elsewhere, 3 * ABANDONED_MARK_MS);
    await touchWorkDir(elsewhere, now - 60_000);
    await writeFile(join(root, "not-ours.txt"), "keep me");
    const own = await claimWorkDir(root, "me", log);

    const registered = new Set(["me", "busy"]);
    expect(await removeAbandonedWorkDirs(root, own, (id) => registered.has(id), now, log)).toBe(1);
    expect((await readdir(root)).sort()).toEqual(["not-ours.txt", "runner-busy", "runner-elsewhere", "runner-me"]);
    expect(await filesUnder(join(root, "runner-elsewhere"))).toEqual(["job/left.part.mp4"]);
  });

  it("removes its own directory at shutdown, but not one a successor with the same RUNNER_ID has taken over", async () => {
    const root = await dirs.make();
    const own = await claimWorkDir(root, "fixed-id", log);
    await writeFile(join(own, "cached-source"), "x");
    await releaseWorkDir(own, "fixed-id", log);
    expect(await readdir(root)).toEqual([]);

    const again = await claimWorkDir(root, "fixed-id", log);
    await writeFile(join(again, MARKER), JSON.stringify({ host: "new-host", pid: 7, runnerId: "fixed-id" }));
    await writeFile(join(again, "successor-file"), "x");
    await releaseWorkDir(again, "fixed-id", log);
    expect(await filesUnder(again)).toEqual(["successor-file"]);
  });
});

describe("a WORK_DIR another local user could steer", () => {
  /** A directory the runner must never touch, with a file in it. */
  async function bystander(): Promise<string> {
    const dir = await dirs.make();
    await writeFile(join(dir, "precious"), "keep me");
    return dir;
  }

  it("refuses to start when its own directory is a symbolic link, leaving the link's target untouched", async () => {
    const root = await dirs.make();
    const target = await bystander();
    const { mode } = await stat(target);
    await symlink(target, ownWorkDir(root, "r1"));
    await expect(claimWorkDir(root, "r1", log)).rejects.toThrow(WorkDirError);
    await expect(claimWorkDir(root, "r1", log)).rejects.toThrow(`cannot use WORK_DIR ${root}: the runner's directory ${ownWorkDir(root, "r1")} is a symbolic link`);
    expect(await readdir(target)).toEqual(["precious"]);
    expect((await stat(target)).mode).toBe(mode);
  });

  it("sweeps and releases nothing through its own directory once it is swapped for a symbolic link after the claim", async () => {
    const root = await dirs.make();
    const own = await claimWorkDir(root, "r1", log);
    // The link's target carries a copy of the runner's mark, as whoever swapped the directory could make.
    const target = await bystander();
    await writeFile(join(target, MARKER), await readFile(join(own, MARKER)));
    await rename(own, join(root, "moved-away"));
    await symlink(target, own);
    expect(await sweepWorkDir(own, new Set(), log)).toBe(0);
    await releaseWorkDir(own, "r1", log);
    expect((await readdir(target)).sort()).toEqual([MARKER, "precious"]);
  });

  it("takes a WORK_DIR that is the operator's link (onto a bigger disk), not one in a directory others may write into", async () => {
    const real = await dirs.make();
    const parent = await dirs.make();
    const link = join(parent, "work");
    await symlink(real, link);
    expect(await claimWorkDir(link, "r1", log)).toBe(ownWorkDir(link, "r1"));
    expect(await readdir(real)).toEqual(["runner-r1"]);
    // Anyone who may write into the link's directory could point it elsewhere.
    await chmod(parent, 0o777);
    await expect(claimWorkDir(link, "r1", log)).rejects.toThrow(`cannot use WORK_DIR ${link}: it is a symbolic link in a directory other users may write into`);
    await chmod(parent, 0o700);
  });

  it("refuses a WORK_DIR that other users may write into without the sticky bit", async () => {
    const open = await dirs.make();
    await chmod(open, 0o777);
    await expect(claimWorkDir(open, "r1", log)).rejects.toThrow(`cannot use WORK_DIR ${open}: it may be written by other users but has no sticky bit`);
    // Like /tmp: others may add their own entries but not rename or remove the runner's.
    await chmod(open, 0o1777);
    expect(await claimWorkDir(open, "r1", log)).toBe(ownWorkDir(open, "r1"));
  });

  it.skipIf(process.getuid?.() !== 0)("refuses its own directory when another user owns it", async () => {
    const root = await dirs.make();
    await mkdir(ownWorkDir(root, "r1"));
    await chown(ownWorkDir(root, "r1"), 12345, 12345);
    await expect(claimWorkDir(root, "r1", log)).rejects.toThrow("belongs to uid 12345, neither the runner's (0) nor root's");
  });
});

describe("what FFmpeg may touch in a runner's directory", () => {
  it("opens a file FFmpeg made only when it is a regular file: never through a symlink, never blocked by a FIFO", async () => {
    const dir = await dirs.make();
    const output = join(dir, "v.a1.part.mp4");
    await writeFile(output, "an output");
    const fh = await openRegularFile(output);
    expect((await fh.readFile()).toString()).toBe("an output");
    await fh.close();
    // An FFmpeg running code from an upload swaps its output for a link to what only the runner may read: the
    // runner would upload it as the user's video.
    const secret = join(dir, "runner-only");
    await writeFile(secret, "LIBSQL_AUTH_TOKEN=…", { mode: 0o600 });
    const link = join(dir, "v.a2.part.mp4");
    await symlink(secret, link);
    await expect(openRegularFile(link)).rejects.toMatchObject({ code: "ELOOP" });
    // …or for a FIFO nobody writes: a plain open for reading would wait forever.
    const fifo = join(dir, "v.a3.part.mp4");
    await execFileP("mkfifo", [fifo]);
    await expect(openRegularFile(fifo)).rejects.toMatchObject({ code: "EINVAL" });
  });

  // FFMPEG_USER needs a runner started as root and setpriv.
  it.skipIf(process.getuid?.() !== 0 || !resolveExecutable("setpriv"))(
    "lets FFmpeg as FFMPEG_USER read a job's files and write only in its out/, nowhere the runner writes",
    async () => {
      const root = await dirs.make();
      await chmod(root, 0o755);
      configureChildren({ setpriv: resolveExecutable("setpriv"), user: { uid: 65534, gid: 65534 } });
      try {
        const own = await claimWorkDir(join(root, "work"), "shared", log);
        const job = join(own, "job-1");
        await makeJobDir(job);
        await writeFile(join(job, "src-1"), "the source");
        expect((await ffmpegRun("/bin/cat", [join(job, "src-1")])).stdout.toString()).toBe("the source");
        await ffmpegRun("/usr/bin/touch", [join(job, FFMPEG_OUT, "v.a1.part.mp4")]);
        // Where the runner downloads sources and keeps sample files, and its own directory: no new entry, no
        // symlink waiting for the runner's next write, no rename of the runner's files.
        await expect(ffmpegRun("/usr/bin/touch", [join(job, "src-2.part")])).rejects.toThrow(/Permission denied/);
        await expect(ffmpegRun("/bin/ln", ["-s", "/etc/passwd", join(own, "job-2")])).rejects.toThrow(/Permission denied/);
        await expect(ffmpegRun("/bin/mv", [join(job, "src-1"), join(job, FFMPEG_OUT, "src-1")])).rejects.toThrow(/Permission denied/);
        expect((await filesUnder(job)).sort()).toEqual(["out/v.a1.part.mp4", "src-1"]);
      } finally {
        configureChildren({ setpriv: null, user: null });
      }
    },
  );

  it.skipIf(process.getuid?.() !== 0 || !resolveExecutable("setpriv"))(
    "gives each FFmpeg run its output file: no run beside it can have made it first, write, remove or rename it, and nothing changes it once sealed",
    async () => {
      const root = await dirs.make();
      await chmod(root, 0o755);
      // Children get 62010 and 62011 (62012 is the killer's own: runner/uid-pool.ts); other test files use other uids.
      configureChildren({ setpriv: resolveExecutable("setpriv"), user: { uid: 62010, lastUid: 62012, gid: 65534 } });
      const as = (lease: ChildLease, bin: string, args: string[]) => {
        const cmd = childCommand(bin, args, lease);
        return execFileP(cmd.file, cmd.args, { env: cmd.env });
      };
      try {
        const own = await claimWorkDir(join(root, "work"), "sticky", log);
        const job = join(own, "job-1");
        await makeJobDir(job);
        const output = join(job, FFMPEG_OUT, "v.a1.part.mp4");
        // Another upload's run, beside the encode, shares the group that may write in out/: it makes the encode's
        // output name first, writable by all, to rewrite whatever the encode writes into it.
        const other = await leaseChild();
        await as(other, "/bin/sh", ["-c", `echo planted > ${output}; chmod 666 ${output}`]);
        const encode = await leaseChild(undefined, [output]);
        expect(encode.uid).not.toBe(other.uid);
        await as(encode, "/bin/sh", ["-c", `echo finished > ${output}`]);
        await expect(as(other, "/bin/sh", ["-c", `echo swapped > ${output}`])).rejects.toThrow(/Permission denied/);
        await expect(as(other, "/bin/rm", ["-f", output])).rejects.toThrow(/Operation not permitted/);
        await expect(as(other, "/bin/mv", [output, `${output}.x`])).rejects.toThrow(/Operation not permitted/);
        await encode.release();
        // Sealed: root's and read-only to the group, so the next run of the same uid cannot change it either.
        expect(await stat(output)).toMatchObject({ uid: 0, gid: 65534, mode: 0o100640 });
        const later = await leaseChild();
        expect(later.uid).toBe(encode.uid);
        await expect(as(later, "/bin/sh", ["-c", `echo rewritten > ${output}`])).rejects.toThrow(/Permission denied/);
        expect(await readFile(output, "utf8")).toBe("finished\n");
        await Promise.all([other.release(), later.release()]);

        // A run that wrote nothing (FFmpeg failed early) leaves no file behind, as before its file was made ready.
        const unwritten = join(job, FFMPEG_OUT, "v.a2.part.mp4");
        await (await leaseChild(undefined, [unwritten])).release();
        expect((await filesUnder(job)).sort()).toEqual(["out/v.a1.part.mp4"]);
        // …and the runner (root) still removes all of it.
        await removeTree(job);
        expect(await readdir(own)).toEqual([MARKER]);
      } finally {
        configureChildren({ setpriv: null, user: null });
      }
    },
  );

  it.skipIf(process.getuid?.() !== 0 || !resolveExecutable("setpriv"))(
    "removes a job's out/ without following a directory FFmpeg's user swaps for a symlink mid-removal, and one it locked",
    async () => {
      const root = await dirs.make();
      await chmod(root, 0o755);
      // What only root may touch, with as many files as the swapped directory: Node's fs.rm, walking by path, deleted
      // most of such a directory once the swap landed mid-walk.
      const victim = await dirs.make();
      const N = 3000;
      for (let i = 0; i < N; i++) await writeFile(join(victim, `f${i}`), "root's");
      configureChildren({ setpriv: resolveExecutable("setpriv"), user: { uid: 65534, gid: 65534 } });
      const own = await claimWorkDir(join(root, "work"), "remover", log);
      const job = join(own, "job-1");
      await makeJobDir(job);
      await writeFile(join(job, "src-1"), "the source");
      // FFmpeg's user (code from an upload): fills out/d/sub, then swaps sub for a symlink to the victim as soon as
      // the removal has started on it. Whoever wins that race, nothing of the victim may go.
      const attacker = `
        const fs = require("node:fs");
        process.chdir(${JSON.stringify(join(job, FFMPEG_OUT))});
        fs.mkdirSync("locked"); fs.writeFileSync("locked/x", ""); fs.chmodSync("locked", 0);
        fs.mkdirSync("d/sub", { recursive: true });
        for (let i = 0; i < ${N}; i++) fs.writeFileSync("d/sub/f" + i, "");
        console.log("ready");
        const end = Date.now() + 30000;
        try { while (fs.readdirSync("d/sub").length === ${N}) if (Date.now() > end) process.exit(1); } catch { process.exit(0); }
        fs.renameSync("d/sub", "d/subx");
        fs.symlinkSync(${JSON.stringify(victim)}, "d/sub");
        console.log("swapped");`;
      const child = spawn("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--pdeathsig", "SIGKILL", "--", process.execPath, "-e", attacker], { stdio: ["ignore", "pipe", "inherit"] });
      const done = new Promise((r) => child.once("exit", r));
      let said = "";
      child.stdout!.on("data", (d: Buffer) => (said += d.toString()));
      try {
        await until("the swapper to say ready", async () => said.includes("ready"), 30_000, 50);
        // The first removal may meet the swap (coreutils rm then reports the tree changed under it); the next one
        // removes what is left, the symlink itself included.
        await removeTree(job).catch(() => {});
        await done;
        await removeTree(job);
      } finally {
        configureChildren({ setpriv: null, user: null });
        child.kill("SIGKILL");
      }
      expect((await readdir(victim)).length).toBe(N);
      expect(await readdir(own)).toEqual([MARKER]);
    },
  );
});
