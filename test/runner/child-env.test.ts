import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { configureChildren } from "../../runner/child-env";
import { resolveExecutable } from "../../runner/config";
import { probeMedia, spawnFfmpeg } from "../../runner/ffmpeg";
import { ffmpegRun } from "../../runner/samples";
import { makeClip } from "../helpers/clips";
import { startEdgeStack, waitFor, type EdgeStack } from "../helpers/edge-stack";
import { startRunnerProcess, writeFfmpegStandIn, type RunnerProcess } from "../helpers/runner";

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
});

// Switching FFmpeg to another user needs a runner started as root (as in the Docker image) and util-linux setpriv.
const canSwitchUser = process.getuid?.() === 0 && resolveExecutable("setpriv") !== null;

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

    it("completes a job whose every FFmpeg and ffprobe ran as that user, and its outputs download", async () => {
      // A stand-in that records who it runs as and whether the runner's environment is readable, then execs the
      // real program. Its directory must be searchable (to exec it) and writable (for the record) by that user.
      const { dir, path: ffmpeg } = await writeFfmpegStandIn(
        "as-user",
        (d) =>
          `#!/bin/sh\nif cat /proc/$PPID/environ > /dev/null 2>&1; then r=readable; else r=denied; fi\necho "$(basename "$0") $(id -u):$(id -g) environ=$r" >> "${join(d, "calls")}"\nexec "$(basename "$0")" "$@"\n`,
      );
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      await copyFile(ffmpeg, join(dir, "ffprobe"));
      await chmod(dir, 0o777);
      const workDir = await stack.workDir();
      await chmod(workDir, 0o755);
      const clip = await makeClip({ seconds: 2 });
      const job = await stack.user.createJob([clip], 2);
      runner = startRunnerProcess(
        stack.runnerEnv({ FFMPEG_USER: "65534:65534", FFMPEG_PATH: ffmpeg, FFPROBE_PATH: join(dir, "ffprobe"), WORK_DIR: workDir }),
      );
      const done = await waitFor("the job to end", async () => ((j) => (["completed", "failed"].includes(j.status) ? j : null))(await stack.user.getJob(job.id)), 120_000);
      expect(done.status, runner.logs()).toBe("completed");

      const calls = (await readFile(join(dir, "calls"), "utf8")).trim().split("\n");
      expect(calls.some((c) => c.startsWith("ffprobe "))).toBe(true);
      expect(calls.filter((c) => c.startsWith("ffmpeg ")).length).toBeGreaterThanOrEqual(4); // 2 encodes + 2 measurements at least
      expect(new Set(calls.map((c) => c.replace(/^\S+ /, "")))).toEqual(new Set(["65534:65534 environ=denied"]));

      const zip = await stack.user.call(`/api/jobs/${job.id}/download`);
      expect(zip.status).toBe(200);
      expect((await zip.arrayBuffer()).byteLength).toBeGreaterThan(10_000);
    });

    it("refuses to start, once and readably, when that user cannot reach WORK_DIR", async () => {
      const workDir = await stack.workDir(); // mkdtemp: 0700, so nobody else may enter
      runner = startRunnerProcess(stack.runnerEnv({ FFMPEG_USER: "65534:65534", WORK_DIR: workDir }));
      const exit = await runner.exited;
      expect(exit.code).toBe(1);
      expect(runner.logs()).toMatch(/FFmpeg cannot work as FFMPEG_USER 65534:65534 in .*WORK_DIR and its parents must be searchable by that user/);
      expect(runner.logs()).not.toMatch(/retrying/);
    });
  });
});
