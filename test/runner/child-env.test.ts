import { existsSync, readFileSync, statSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { childCommand, configureChildren, killLeftovers, leaseChild } from "../../runner/child-env";
import { resolveExecutable } from "../../runner/config";
import { assertDecodable, probeMedia, spawnFfmpeg } from "../../runner/ffmpeg";
import { LocalError } from "../../runner/local-errors";
import { ffmpegRun } from "../../runner/samples";
import { makeClip } from "../helpers/clips";
import { startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { startInProcessRunner, startRunnerProcess, writeFfmpegStandIn, type RunnerProcess } from "../helpers/runner";
import { getVariationRows } from "../helpers/seed";
import { eq } from "drizzle-orm";
import { jobs } from "../../db/schema";

let dir: string;
let standIn: string;
const saved = { db: process.env.LIBSQL_AUTH_TOKEN, runner: process.env.RUNNER_TOKEN };
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-child-env-"));
  // A stand-in FFmpeg/ffprobe that writes the environment it was given to the file named by its last argument.
  standIn = join(dir, "stand-in.sh");
  await writeFile(standIn, '#!/bin/sh\nfor last; do :; done\nenv > "$last"\n');
  await chmod(standIn, 0o755);
  process.env.LIBSQL_AUTH_TOKEN = "db-secret-for-the-test";
  process.env.RUNNER_TOKEN = "runner-secret-for-the-test";
});
afterAll(async () => {
  for (const [name, value] of [["LIBSQL_AUTH_TOKEN", saved.db], ["RUNNER_TOKEN", saved.runner]] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await rm(dir, { recursive: true, force: true });
});

describe("FFmpeg and ffprobe started by the runner", () => {
  it("see neither the database credential nor the runner token (they parse untrusted uploads), but do get PATH", async () => {
    const files = { encode: join(dir, "encode.env"), probe: join(dir, "probe.env"), measure: join(dir, "measure.env") };
    await spawnFfmpeg(standIn, [files.encode]).exited;
    await probeMedia(standIn, files.probe).catch(() => {});
    await ffmpegRun(standIn, [files.measure]).catch(() => {});
    for (const file of Object.values(files)) {
      const env = await readFile(file, "utf8");
      expect(env).toMatch(/^PATH=/m);
      expect(env).not.toContain("db-secret-for-the-test");
      expect(env).not.toContain("runner-secret-for-the-test");
    }
  });

  // The limit never exceeds this process's own hard one: the figures below need room for 300.
  const hardNproc = Number(/^Max processes\s+\S+\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? Infinity);
  it.skipIf(hardNproc < 300)("get a process limit per run with a range of uids, and one for every child at once when they share a uid", () => {
    const nproc = { prlimit: "/usr/bin/prlimit", perRun: 100, sharedBy: 3 };
    try {
      expect(configureChildren({ setpriv: "/usr/bin/setpriv", user: { uid: 990, gid: 990 }, nproc })).toEqual({ nproc: 300, nprocAsked: 300 });
      expect(childCommand("ffmpeg", ["-version"]).args.slice(0, 3)).toEqual(["--nproc=300", "--", "/usr/bin/setpriv"]);
      configureChildren({ setpriv: "/usr/bin/setpriv", user: { uid: 62000, lastUid: 62003, gid: 990 }, nproc });
      expect(childCommand("ffmpeg", ["-version"], { uid: 62000, release: async () => {} }).args[0]).toBe("--nproc=100");
      // Without a user of its own the limit would count the runner's processes: none is set.
      configureChildren({ setpriv: "/usr/bin/setpriv", user: null, nproc });
      expect(childCommand("ffmpeg", ["-version"]).file).toBe("/usr/bin/setpriv");
    } finally {
      configureChildren({ setpriv: null, user: null });
    }
  });
});

// Switching FFmpeg to another user needs a runner started as root (as in the Docker image) and util-linux setpriv
// and prlimit.
const canSwitchUser = process.getuid?.() === 0 && resolveExecutable("setpriv") !== null && resolveExecutable("prlimit") !== null && existsSync("/bin/dash");

describe.skipIf(!canSwitchUser)("FFmpeg with FFMPEG_USER (runner started as root)", () => {
  const nobody = { uid: 65534, gid: 65534 };
  afterEach(() => configureChildren({ setpriv: null, user: null }));

  it("runs as that user with no groups, and cannot read the runner's environment (where its secrets are)", async () => {
    const setpriv = resolveExecutable("setpriv")!;
    const environ = `/proc/${process.pid}/environ`;
    // The hole FFMPEG_USER closes: the runner's own uid reads the environment the runner started with (a container's
    // --env-file: the secrets) straight out of /proc, however clean its own environment is.
    configureChildren({ setpriv, user: null });
    expect((await ffmpegRun("/bin/cat", [environ])).stdout.toString()).toMatch(/(^|\0)PATH=/);

    configureChildren({ setpriv, user: nobody });
    expect((await ffmpegRun("/bin/sh", ["-c", "id -u; id -g; id -G"])).stdout.toString().split("\n")).toEqual(["65534", "65534", "65534", ""]);
    await expect(ffmpegRun("/bin/cat", [environ])).rejects.toThrow(/Permission denied/);
    const encode = spawnFfmpeg("/bin/cat", [environ]);
    expect((await encode.exited).code).toBe(1);
    expect(encode.stderrTail()).toMatch(/Permission denied/);
  });

  // A process that is gone, or a zombie nobody reaped yet (dead: it runs no code).
  const running = async (pid: number) => {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
    return stat !== null && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  };
  // Code an upload smuggled into FFmpeg: a process in a session of its own (out of FFmpeg's process group, so the
  // stop sequence and the parent-death signal miss it) that outlives its parent.
  const escape = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!; id -u";
  // 62003, the range's last uid, is the killer's own (runner/uid-pool.ts): children get 62000–62002.
  const range = { uid: 62000, lastUid: 62003, gid: 65534 };
  const leftover: number[] = [];
  afterAll(async () => {
    // Only while the pid is still one of this test's uids: a pid long gone may be somebody else's by now.
    for (const pid of leftover) {
      const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
      if (/^Uid:\s+(6200[0-3]|65534)\s/m.test(status) && (await running(pid))) process.kill(pid, "SIGKILL");
    }
  });

  it("with a range of uids, kills whatever a child left running once it exits; with one uid for all it lives on", async () => {
    const setpriv = resolveExecutable("setpriv")!;
    configureChildren({ setpriv, user: nobody });
    const [kept] = (await ffmpegRun("/bin/sh", ["-c", escape])).stdout.toString().split("\n").map(Number) as [number];
    leftover.push(kept);
    expect(await running(kept)).toBe(true);

    configureChildren({ setpriv, user: range });
    const uids = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const [pid, uid] = (await ffmpegRun("/bin/sh", ["-c", escape])).stdout.toString().split("\n").map(Number) as [number, number];
      leftover.push(pid);
      uids.add(uid);
      // Dead by the time the run's promise settles: release waits until /proc shows it gone.
      expect(await running(pid)).toBe(false);
    }
    expect([...uids].sort()).toEqual([62000, 62001, 62002]);
    expect(await running(kept)).toBe(true); // another uid's processes are not touched
  });

  it("kills a leftover that keeps sending SIGKILL to every process of its uid, and hands that uid out again", async () => {
    const quarantined: number[] = [];
    configureChildren({ setpriv: resolveExecutable("setpriv")!, user: range, onQuarantine: (uid) => quarantined.push(uid) });
    const spot = join(dir, "fighter");
    await rm(spot, { recursive: true, force: true });
    await mkdir(spot, { mode: 0o777 });
    await chmod(dir, 0o755);
    await chmod(spot, 0o777);
    const pidFile = join(spot, "pid");
    const lease = await leaseChild();
    // The "FFmpeg" leaves a process in a session of its own that kills everything of its uid, over and over: its
    // parent first (the run ends), then whatever of that uid comes to kill it.
    const cmd = childCommand("/bin/sh", ["-c", `setsid sh -c 'echo $$ > ${pidFile}; while :; do kill -KILL -1 2>/dev/null; done' </dev/null >/dev/null 2>&1 & sleep 300`], lease);
    const run = await new Promise<Error | null>((resolve) => execFile(cmd.file, cmd.args, { env: cmd.env }, (err) => resolve(err)));
    const fighter = Number((await readFile(pidFile, "utf8")).trim());
    leftover.push(fighter);
    expect(run).toMatchObject({ signal: "SIGKILL" }); // killed by its own leftover, which is looping now
    expect(await running(fighter)).toBe(true);
    await lease.release();
    expect(await running(fighter)).toBe(false);
    expect(quarantined).toEqual([]);
    // The uid is in use again (the pool's order: the released one is last in line).
    const next = [await leaseChild(), await leaseChild(), await leaseChild()];
    expect(next.map((l) => l.uid)).toContain(lease.uid);
    await Promise.all(next.map((l) => l.release()));
  });

  it("stops a run that forks without end at its process limit, and its uid's processes die with the run", async () => {
    // A range no other test uses (test files run in parallel; a release kills every process of its uid), and
    // killed processes stay zombies (counted against the limit) until reaped.
    configureChildren({ setpriv: resolveExecutable("setpriv")!, user: { uid: 62100, lastUid: 62101, gid: 65534 }, nproc: { prlimit: resolveExecutable("prlimit")!, perRun: 8, sharedBy: 3 } });
    const lease = await leaseChild();
    // Running ones: a killed sleeper stays a zombie until whoever adopted it reaps it.
    const uidProcesses = async () => {
      const { stdout: ps } = await new Promise<{ stdout: string }>((resolve) => execFile("ps", ["-o", "stat=", "-u", String(lease.uid)], (_e, stdout) => resolve({ stdout: String(stdout) })));
      return ps.split("\n").filter((l) => l.trim() && !l.trim().startsWith("Z")).length;
    };
    try {
      // Code an upload smuggled into FFmpeg starting sleepers until the host has no pids left; each one it got is
      // counted on stdout. dash gives up at the first fork the kernel refuses (bash would retry for half a minute).
      const bomb = "grep '^Max processes' /proc/self/limits; i=0; while [ $i -lt 40 ]; do sleep 300 </dev/null >/dev/null 2>&1 & i=$((i+1)); echo started $i; done";
      const cmd = childCommand("/bin/dash", ["-c", bomb], lease);
      const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
        execFile(cmd.file, cmd.args, { env: cmd.env, timeout: 30_000 }, (_err, stdout, stderr) => resolve({ stdout: String(stdout), stderr: String(stderr) })),
      );
      expect(stdout).toMatch(/^Max processes\s+8\s+8\s/m);
      const started = stdout.split("\n").filter((l) => l.startsWith("started ")).length;
      expect(started).toBeGreaterThan(0);
      expect(started).toBeLessThan(8); // the shell itself is one of the uid's 8
      expect(stderr).toMatch(/fork/i);
      expect(await uidProcesses()).toBe(started); // the sleepers outlived their shell
    } finally {
      await lease.release();
    }
    expect(await uidProcesses()).toBe(0);
  });

  // With one CPU, FFmpeg starts no decoder threads: nothing to refuse.
  it.skipIf(availableParallelism() < 2)("reports a decoder the process limit refused threads as the runner's trouble, not as an undecodable video", async () => {
    configureChildren({ setpriv: resolveExecutable("setpriv")!, user: { uid: 62110, lastUid: 62111, gid: 65534 }, nproc: { prlimit: resolveExecutable("prlimit")!, perRun: 2, sharedBy: 3 } });
    const clip = await makeClip({ seconds: 1 });
    // Another run of the same uid (or another runner's, on the same host) has used the budget up: here, a tiny one.
    const err = await assertDecodable("ffmpeg", clip).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LocalError);
    expect(err).toMatchObject({ code: "EAGAIN", message: "checking the video failed: the runner had no room for FFmpeg's threads (resource temporarily unavailable)" });
    // With room, the same file decodes.
    configureChildren({ setpriv: resolveExecutable("setpriv")!, user: { uid: 62110, lastUid: 62111, gid: 65534 }, nproc: { prlimit: resolveExecutable("prlimit")!, perRun: 1024, sharedBy: 3 } });
    await expect(assertDecodable("ffmpeg", clip)).resolves.toBeUndefined();
  });

  it("seals what a run wrote before its uid goes to the next run waiting for one", async () => {
    configureChildren({ setpriv: resolveExecutable("setpriv")!, user: { uid: 62000, lastUid: 62002, gid: 65534 } });
    const spot = join(dir, "seal");
    await rm(spot, { recursive: true, force: true });
    await mkdir(spot);
    await chmod(dir, 0o755);
    await chmod(spot, 0o1777);
    const output = join(spot, "v.a1.part.mp4");
    const busy = await leaseChild();
    const encode = await leaseChild(undefined, [output]);
    const cmd = childCommand("/bin/sh", ["-c", `echo finished > ${output}`], encode);
    await new Promise((resolve, reject) => execFile(cmd.file, cmd.args, { env: cmd.env }, (err) => (err ? reject(err) : resolve(null))));
    // The next run waits for a uid; the moment it gets the encode's, the file must no longer be that uid's.
    const next = leaseChild().then((lease) => ({ lease, stat: statSync(output) })); // synchronously, at the hand-over
    await encode.release();
    const { lease, stat: st } = await next;
    expect(lease.uid).toBe(encode.uid);
    expect(st).toMatchObject({ uid: 0, mode: 0o100640 });
    await Promise.all([busy.release(), lease.release()]);
  });

  it("gives children running at once uids of their own, and makes one wait while every uid is busy", async () => {
    configureChildren({ setpriv: resolveExecutable("setpriv")!, user: { uid: 62000, lastUid: 62002, gid: 65534 } });
    const go = join(dir, "go");
    await rm(go, { force: true });
    await chmod(dir, 0o755); // the children look for `go` here
    const hold = () => ffmpegRun("/bin/sh", ["-c", `id -u; while [ ! -e ${go} ]; do sleep 0.05; done`]);
    const first = [hold(), hold()];
    let thirdStarted = false;
    const third = leaseChild().then((lease) => ((thirdStarted = true), lease));
    // Both uids are held until `go` exists, so the third cannot have one, however long this waits.
    await new Promise((r) => setTimeout(r, 300));
    expect(thirdStarted).toBe(false);
    await writeFile(go, "");
    const uids = (await Promise.all(first)).map((r) => Number(r.stdout.toString().trim()));
    expect(new Set(uids)).toEqual(new Set([62000, 62001]));
    const lease = await third;
    expect(uids).toContain(lease.uid);
    await lease.release();

    // A wait given up (its task stopped) takes no uid with it.
    const held = [await leaseChild(), await leaseChild()];
    const stop = new AbortController();
    const waiting = leaseChild(stop.signal);
    stop.abort();
    await expect(waiting).rejects.toMatchObject({ code: "ABORT_ERR" });
    await Promise.all(held.map((l) => l.release()));
    const again = [await leaseChild(), await leaseChild()];
    expect(new Set(again.map((l) => l.uid))).toEqual(new Set([62000, 62001]));
    await Promise.all(again.map((l) => l.release()));
  });

  it("kills at a runner's start what an earlier life left running as the range's uids", async () => {
    const setpriv = resolveExecutable("setpriv")!;
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      execFile(setpriv, ["--reuid=62002", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", escape], (err, stdout) => (err ? reject(err) : resolve({ stdout }))),
    );
    const pid = Number(stdout.split("\n")[0]);
    leftover.push(pid);
    expect(await running(pid)).toBe(true);
    configureChildren({ setpriv, user: range });
    expect(await killLeftovers()).toEqual([]);
    expect(await running(pid)).toBe(false);
  });

  describe("a runner with FFMPEG_USER", { timeout: 180_000 }, () => {
    let stack: EdgeStack;
    let runner: RunnerProcess | undefined;
    beforeAll(async () => {
      stack = await startEdgeStack("ffmpeg_user");
    }, 120_000);
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      await runner?.destroy();
      runner = undefined;
      for (const fn of cleanups.splice(0)) await fn();
      await stack.settleLeftovers();
    });
    afterAll(() => stack?.close());

    it("completes a job whose every FFmpeg and ffprobe ran as a uid of the range, leaving nothing of theirs running, and its outputs download", async () => {
      // A stand-in that records who it runs as, its process limit and whether the runner's environment is readable, leaves a process
      // in a session of its own running (as code from an upload could), then execs the real program. Its directory
      // must be searchable (to exec it) by those uids, and the record writable.
      const { dir, path: ffmpeg } = await writeFfmpegStandIn(
        "as-user",
        (d) =>
          `#!/bin/sh\nif cat /proc/$PPID/environ > /dev/null 2>&1; then r=readable; else r=denied; fi\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\nn=$(sed -n "s/^Max processes *\\([0-9]*\\).*/\\1/p" /proc/self/limits)\necho "$(basename "$0") $(id -u):$(id -g) environ=$r nproc=$n escapee=$!" >> "${join(d, "calls")}"\nexec "$(basename "$0")" "$@"\n`,
      );
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      await copyFile(ffmpeg, join(dir, "ffprobe"));
      await chmod(dir, 0o755);
      await writeFile(join(dir, "calls"), "");
      await chmod(join(dir, "calls"), 0o666);
      const workDir = await stack.workDir();
      await chmod(workDir, 0o755);
      const clip = await makeClip({ seconds: 2 });
      const job = await stack.user.createJob([clip], 2);
      runner = startRunnerProcess(
        stack.runnerEnv({ FFMPEG_USER: "62000-62003:65534", FFMPEG_MAX_PROCESSES: "300", FFMPEG_PATH: ffmpeg, FFPROBE_PATH: join(dir, "ffprobe"), WORK_DIR: workDir }),
      );
      const done = await until("the job to end", async () => ((j) => (["completed", "failed"].includes(j.status) ? j : null))(await stack.user.getJob(job.id)), 120_000);
      expect(done.status, runner.logs()).toBe("completed");

      const calls = (await readFile(join(dir, "calls"), "utf8")).trim().split("\n");
      const escapees = calls.map((c) => Number(c.replace(/.*escapee=/, "")));
      leftover.push(...escapees);
      expect(calls.some((c) => c.startsWith("ffprobe "))).toBe(true);
      expect(calls.filter((c) => c.startsWith("ffmpeg ")).length).toBeGreaterThanOrEqual(4); // 2 encodes + 2 measurements at least
      for (const call of calls) expect(call).toMatch(/^(ffmpeg|ffprobe) 6200[0-2]:65534 environ=denied nproc=300 escapee=\d+$/);
      expect(new Set(calls.map((c) => c.split(" ")[1])).size).toBeGreaterThan(1);
      // Each child's leftover is killed when that child exits (the job's thumbnail may still be in the making).
      await until("every child's leftover process to be gone", async () => ((await Promise.all(escapees.map(running))).some(Boolean) ? null : true), 15_000);

      const zip = await stack.user.call(`/api/jobs/${job.id}/download`);
      expect(zip.status).toBe(200);
      expect((await zip.arrayBuffer()).byteLength).toBeGreaterThan(10_000);
    });

    it("ends a variation cancelled while its encode waits for a uid of the range as cancelled, with no FFmpeg started for it", async () => {
      const workDir = await stack.workDir();
      await chmod(workDir, 0o755);
      const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
      // A thumbnail in place already: the job's children are then the probe, the decode check and the encode, in turn.
      await stack.db.update(jobs).set({ thumbnailKey: `thumbnails/${job.id}.jpg` }).where(eq(jobs.id, job.id));
      const inProcess = await startInProcessRunner({ env: stack.runnerEnv({ FFMPEG_USER: "62000-62002:65534", WORK_DIR: workDir, CONCURRENCY: "1" }) });
      cleanups.push(() => inProcess.stop());
      // This test process is the runner's: it holds both uids (before the first claim's reply can arrive), as two
      // long encodes would, and lets the probe and the decode check have one in turn, so the encode finds none free.
      const held = [await leaseChild(), await leaseChild()];
      cleanups.push(async () => void (await Promise.all(held.map((l) => l.release()))));
      const waitingOne = async () => inProcess.metrics.childrenWaiting.get() === 1;
      for (const what of ["probe", "decode check"]) {
        await until(`the ${what} to wait for a uid`, waitingOne);
        const release = held[0]!.release();
        held[0] = await Promise.all([leaseChild(), release]).then(([lease]) => lease); // taken back once it is done
      }
      await until("the encode to wait for a uid", waitingOne);

      expect((await stack.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" })).ok).toBe(true);
      const done = await until("the job to end", async () => ((j) => (["cancelled", "completed", "failed"].includes(j.status) ? j : null))(await stack.user.getJob(job.id)), 30_000);
      const logs = inProcess.lines.join("\n");
      expect(done.status, logs).toBe("cancelled");
      expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "cancelled", outputKey: null });
      expect(logs).toMatch(/stopping variation .*reason=cancel phase=prepare/);
      expect(logs).not.toMatch(/ffmpeg started/);
      expect(inProcess.metrics.childrenWaiting.get()).toBe(0);
    });

    it("starts no re-draw whose encode was waiting for a uid when the job was cancelled: the earlier draw completes", async () => {
      const workDir = await stack.workDir();
      await chmod(workDir, 0o755);
      const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
      await stack.db.update(jobs).set({ thumbnailKey: `thumbnails/${job.id}.jpg` }).where(eq(jobs.id, job.id));
      const inProcess = await startInProcessRunner({
        env: stack.runnerEnv({ FFMPEG_USER: "62000-62002:65534", WORK_DIR: workDir, CONCURRENCY: "1", QUALITY_SSIM_FLOOR: "1", MAX_REDRAWS: "1" }),
      });
      cleanups.push(() => inProcess.stop());
      const held = [await leaseChild(), await leaseChild()];
      cleanups.push(async () => void (await Promise.all(held.map((l) => l.release()))));
      const logs = () => inProcess.lines.join("\n");
      // One uid at a time for each child in turn (probe, decode check, encode, measurement…) until the re-draw's
      // encode is the one waiting: it is logged as re-drawn before it asks for a uid.
      for (;;) {
        await until("a child to wait for a uid", async () => inProcess.metrics.childrenWaiting.get() === 1);
        if (/variation re-drawn/.test(logs())) break;
        const release = held[0]!.release();
        held[0] = await Promise.all([leaseChild(), release]).then(([lease]) => lease);
      }
      expect((await stack.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" })).ok).toBe(true);
      await inProcess.waitForLog(/cancel requested after FFmpeg finished: completing anyway/);
      await Promise.all(held.splice(0).map((l) => l.release()));

      const done = await until("the job to end", async () => ((j) => (["cancelled", "completed", "failed"].includes(j.status) ? j : null))(await stack.user.getJob(job.id)), 30_000);
      expect(done.status, logs()).toBe("completed");
      expect(logs().match(/ffmpeg started/g)).toHaveLength(1);
      expect((await getVariationRows(stack.db, job.id))[0]!.redrawReason).toMatch(/the re-draw was stopped/);
    });

    it("refuses a second start with the same RUNNER_ID before killing anything: the live runner's encode runs on and completes", async () => {
      // The live runner's encode waits for the test's gate, so it is surely running as a uid of the range while the
      // second start comes and goes.
      const { dir, path: ffmpeg } = await writeFfmpegStandIn(
        "held-twin",
        (d) => `#!/bin/sh\ncase " $* " in\n  *" -progress "*) while [ ! -e "${join(d, "open")}" ]; do sleep 0.05; done ;;\nesac\nexec ffmpeg "$@"\n`,
      );
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      await chmod(dir, 0o755); // the range's uids run the stand-in and look for the gate there
      const workDir = await stack.workDir();
      await chmod(workDir, 0o755);
      const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
      // Its own range (62130–62133): no other test's children are running as these uids.
      const env = stack.runnerEnv({ FFMPEG_USER: "62130-62133:65534", FFMPEG_PATH: ffmpeg, WORK_DIR: workDir, CONCURRENCY: "1" });
      runner = startRunnerProcess(env);
      await runner.waitForLog(/ffmpeg started/, 60_000);
      const [encode] = runner.ffmpegPids() as [number];
      expect(await running(encode)).toBe(true);

      const twin = startRunnerProcess(env);
      cleanups.push(() => twin.destroy());
      expect((await twin.exited).code, twin.logs()).toBe(1);
      expect(twin.logs()).toContain(`RUNNER_ID ${env.RUNNER_ID} is already used by a live runner (pid ${runner.pid}) on this host`);
      // Its start-up kill of a previous life's leftovers would have taken the live runner's FFmpeg with it.
      expect(await running(encode), twin.logs()).toBe(true);

      await writeFile(join(dir, "open"), "");
      const done = await until("the job to end", async () => ((j) => (["completed", "failed"].includes(j.status) ? j : null))(await stack.user.getJob(job.id)), 60_000);
      expect(done.status, runner.logs()).toBe("completed");
      expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "completed", attempts: 1, claims: 1 });
      expect(runner.ffmpegPids()[0]).toBe(encode);
    });

    it("refuses to start, once and readably, when that user cannot reach WORK_DIR", async () => {
      const workDir = await stack.workDir(); // mkdtemp: 0700, so nobody else may enter
      runner = startRunnerProcess(stack.runnerEnv({ FFMPEG_USER: "65534:65534", WORK_DIR: workDir }));
      const exit = await runner.exited;
      expect(exit.code).toBe(1);
      expect(runner.logs()).toMatch(/FFmpeg cannot work as FFMPEG_USER 65534:65534 in .*WORK_DIR and its parents must be searchable by that user/);
      expect(runner.logs()).not.toMatch(/retrying/);
    });

    // Root of the host's own user namespace: the kernel exempts it from RLIMIT_NPROC. Root in a user namespace (a
    // rootless container) is counted, with every process of its mapped uid, and the runner could not start.
    const hostRoot = readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/).join(" ") === "0 0 4294967295";
    it.skipIf(!hostRoot)("gives FFmpeg the runner's own hard process limit, and says so at start, when FFMPEG_MAX_PROCESSES asks for more", async () => {
      const workDir = await stack.workDir();
      await chmod(workDir, 0o755);
      // Root may start processes past its own limit (the kernel exempts it), so the runner starts and works as in a
      // container whose nproc ulimit is lower than the setting asks.
      runner = startRunnerProcess(
        stack.runnerEnv({ FFMPEG_USER: "62120-62123:65534", FFMPEG_MAX_PROCESSES: "300", WORK_DIR: workDir }),
        [resolveExecutable("prlimit")!, "--nproc=200:200", "--"],
      );
      expect(await runner.waitForLog(/runner started/)).toMatch(/ ffmpeg_max_processes=200( |$)/);
      expect(await runner.waitForLog(/lower process limit/)).toMatch(/ asked=300 applied=200( |$)/);
    });
  });
});
