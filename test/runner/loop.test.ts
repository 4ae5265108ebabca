import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { eq } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { makeClip } from "../helpers/clips";
import { startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { startInProcessRunner, writeFfmpegStandIn } from "../helpers/runner";
import { getJobRow, getVariationRows } from "../helpers/seed";
import { variations } from "../../db/schema";
import { ownWorkDir } from "../../runner/workdir";

/**
 * A removal of `dir` held by the test: the runner's next removeTree of that directory tells `held`, waits for
 * `gate`, removes, then tells `done`. Every other call is the real one.
 */
const removal = vi.hoisted(() => ({ hold: null as null | { dir: string; held: () => void; gate: Promise<void>; done: () => void } }));
vi.mock("../../runner/workdir", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../runner/workdir")>();
  const removeTree = async (path: string) => {
    const h = removal.hold;
    if (!h || path !== h.dir) return real.removeTree(path);
    removal.hold = null;
    h.held();
    await h.gate;
    await real.removeTree(path);
    h.done();
  };
  return { ...real, removeTree };
});

let stack: EdgeStack;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  stack = await startEdgeStack("runner_loop");
}, 120_000);
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  await stack.settleLeftovers();
});
afterAll(() => stack?.close());

/**
 * An FFmpeg whose quality measurements (the only calls with an `ssim` filter) wait until `gate` exists; every other
 * call is the real ffmpeg. The test opens the gate, so nothing here depends on how fast either side runs.
 */
async function ffmpegWithGatedMeasurement(): Promise<{ path: string; gate: string }> {
  const { dir, path } = await writeFfmpegStandIn(
    "gated",
    (d) => `#!/bin/sh\ncase "$*" in\n  *ssim*) while [ ! -e "${join(d, "open")}" ]; do sleep 0.05; done ;;\nesac\nexec ffmpeg "$@"\n`,
  );
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return { path, gate: join(dir, "open") };
}

/**
 * An FFmpeg that appends "+" when an encode (the only calls with `-progress`) starts and "-" when it exits, to
 * `events`; the order of the lines is the order of the events, so counting needs no clock.
 */
async function ffmpegCountingEncodes(): Promise<{ path: string; events: string }> {
  const { dir, path } = await writeFfmpegStandIn(
    "counted",
    (d) =>
      `#!/bin/sh\ncase " $* " in\n  *" -progress "*)\n    echo + >> "${join(d, "events")}"\n    ffmpeg "$@"\n    code=$?\n    echo - >> "${join(d, "events")}"\n    exit $code ;;\nesac\nexec ffmpeg "$@"\n`,
  );
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return { path, events: join(dir, "events") };
}

const variationOf = (line: string) => /variation=(\S+)/.exec(line)?.[1];

describe("runner loop: encode slots", { timeout: 180_000 }, () => {
  it("starts the next variation's encode as soon as FFmpeg exits, while the finished one is still being measured", async () => {
    const { path, gate } = await ffmpegWithGatedMeasurement();
    const clip = await makeClip({ seconds: 4 });
    const job = await stack.user.createJob([clip], 2);
    // One slot, and a watch period far longer than the test: only the slot freeing up can claim the second variation.
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ CONCURRENCY: "1", WATCH_MS: "100000", LEASE_MS: "300000", FFMPEG_PATH: path, WORK_DIR: await stack.workDir() }),
    });
    cleanup.push(() => r.stop());

    const first = variationOf(await r.waitForLog(/ffmpeg started/, 60_000))!;
    // The first measurement is held at the gate, so the first variation cannot have finished yet. (Well inside the
    // measurement's own 60 s limit, after which the old code would have claimed the second one anyway.)
    const started = await until("a second encode while the first variation is being measured", async () => {
      const lines = r.lines.filter((l) => l.includes("ffmpeg started")).map(variationOf);
      return lines.find((v) => v !== first);
    }, 30_000);
    expect(started).not.toBe(first);
    expect(r.lines.filter((l) => /variation measured|quality measurement failed/.test(l))).toEqual([]);
    const rows = await getVariationRows(stack.db, job.id);
    expect(rows.find((v) => v.id === first)).toMatchObject({ status: "running" });

    await writeFile(gate, "");
    const done = await until("the job to complete", async () => ((j) => (j?.status === "completed" ? j : null))(await getJobRow(stack.db, job.id)), 90_000);
    expect(done.status).toBe("completed");
  });

  it.each([
    { concurrency: 1, variations: 3, maxRedraws: 2 },
    { concurrency: 2, variations: 4, maxRedraws: 1 },
  ])("makes a re-draw wait for an encode slot: never more than CONCURRENCY encodes at once (CONCURRENCY $concurrency)", async ({ concurrency, variations, maxRedraws }) => {
    const { path, events } = await ffmpegCountingEncodes();
    const clip = await makeClip({ seconds: 4 });
    const job = await stack.user.createJob([clip], variations);
    // SSIM floor 1: every draw is re-drawn up to MAX_REDRAWS, each after its slot went to the next claim.
    const r = await startInProcessRunner({
      env: stack.runnerEnv({
        CONCURRENCY: String(concurrency),
        QUALITY_SSIM_FLOOR: "1",
        MAX_REDRAWS: String(maxRedraws),
        FFMPEG_PATH: path,
        WORK_DIR: await stack.workDir(),
      }),
    });
    cleanup.push(() => r.stop());
    const done = await until("the job to complete", async () => ((j) => (j?.status === "completed" ? j : null))(await getJobRow(stack.db, job.id)), 150_000);
    expect(done.status).toBe("completed");
    const redraws = r.lines.filter((l) => l.includes("variation re-drawn")).length;
    expect(redraws).toBeGreaterThan(0);

    const lines = (await readFile(events, "utf8")).trim().split("\n");
    expect(lines.filter((l) => l === "+")).toHaveLength(variations + redraws);
    let running = 0;
    let most = 0;
    for (const l of lines) most = Math.max(most, (running += l === "+" ? 1 : -1));
    expect(most).toBeLessThanOrEqual(concurrency);
  });
});

describe("runner loop: a finished job's sweep", { timeout: 180_000 }, () => {
  it("never removes the directory of a task claimed for the same job while the sweep was removing it (more variations added)", async () => {
    // Encodes of the held job wait for the test's gate; until `hold` names the job, nothing is held.
    const { dir: ffDir, path } = await writeFfmpegStandIn(
      "held-more",
      (d) => `#!/bin/sh\ncase " $* " in\n  *" -progress "*)\n    case "$*" in *"$(cat "${join(d, "hold")}")"*) while [ ! -e "${join(d, "open")}" ]; do sleep 0.05; done ;; esac ;;\nesac\nexec ffmpeg "$@"\n`,
    );
    cleanup.push(() => rm(ffDir, { recursive: true, force: true }));
    await writeFile(join(ffDir, "hold"), "nothing-is-held");
    const workDir = await stack.workDir();
    const env = stack.runnerEnv({ CONCURRENCY: "1", WORK_DIR: workDir, FFMPEG_PATH: path });
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const jobDir = join(ownWorkDir(workDir, env.RUNNER_ID!), job.id);
    let held = false;
    let openGate!: () => void;
    let removed!: () => void;
    const removalDone = new Promise<void>((r) => (removed = r));
    removal.hold = { dir: jobDir, held: () => (held = true), gate: new Promise<void>((r) => (openGate = r)), done: removed };
    cleanup.push(async () => {
      removal.hold = null;
      openGate();
    });

    const r = await startInProcessRunner({ env });
    cleanup.push(() => r.stop());
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000);
    await until("the job sweep's removal of its directory to be under way", async () => held, 30_000);
    await writeFile(join(ffDir, "hold"), job.id);
    const more = await stack.user.call(`/api/jobs/${job.id}/more`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ variations: 1 }) });
    expect(more.status).toBe(200);

    // The new task either went ahead into the directory being removed (its source is there) or waits for the removal.
    const hasSource = async () => (await readdir(jobDir).catch(() => [] as string[])).some((n) => /^src-[^.]+$/.test(n));
    const waits = () => r.lines.some((l) => l.includes("waiting for the job's local files to be removed"));
    await until("the new task to have its source or to wait for the sweep", async () => waits() || (await hasSource()), 60_000);
    openGate();
    await removalDone;
    await writeFile(join(ffDir, "open"), "");

    await until("the job to complete again", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000);
    const rows = await getVariationRows(stack.db, job.id);
    expect(rows.map((v) => ({ status: v.status, attempts: v.attempts }))).toEqual([
      { status: "completed", attempts: 1 },
      { status: "completed", attempts: 1 },
    ]);
  });
});

describe.skipIf(process.getuid?.() !== 0)("runner loop: a disk short of room", { timeout: 180_000 }, () => {
  /**
   * A 32 MiB disk of the test's own (root: mount), so its free space moves only with what this runner writes, with
   * `work/` in it; and an FFmpeg stand-in whose encodes of the job named in `<ffDir>/hold` wait until `<ffDir>/open`
   * exists (the runner is then never idle: idle, it empties its cache anyway). Both removed after the test.
   */
  async function smallDiskAndHeldEncodes(name: string): Promise<{ disk: string; ffDir: string; path: string }> {
    const disk = await mkdtemp(join(tmpdir(), "vr-loop-disk-"));
    await promisify(execFile)("mount", ["-t", "tmpfs", "-o", "size=32m,mode=0777", "tmpfs", disk]);
    cleanup.push(async () => {
      await promisify(execFile)("umount", [disk]);
      await rm(disk, { recursive: true, force: true });
    });
    await mkdir(join(disk, "work"));
    const { dir: ffDir, path } = await writeFfmpegStandIn(
      name,
      (d) => `#!/bin/sh\ncase " $* " in\n  *" -progress "*)\n    case "$*" in *"$(cat "${join(d, "hold")}")"*) while [ ! -e "${join(d, "open")}" ]; do sleep 0.05; done ;; esac ;;\nesac\nexec ffmpeg "$@"\n`,
    );
    cleanup.push(() => rm(ffDir, { recursive: true, force: true }));
    return { disk, ffDir, path };
  }

  it("gives back the sources it keeps for later variations and claims again while a long encode is still in hand", async () => {
    const MiB = 1024 * 1024;
    const { disk, ffDir, path } = await smallDiskAndHeldEncodes("held");
    const jobA = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    await writeFile(join(ffDir, "hold"), jobA.id);
    // Job B's second variation is another runner's: B does not finish, so its source stays in this runner's cache.
    const bClip = await makeClip({ seconds: 12 });
    const jobB = await stack.user.createJob([bClip], 2);
    const [, elsewhere] = await getVariationRows(stack.db, jobB.id);
    await stack.db
      .update(variations)
      .set({ status: "running", runnerId: "runner-elsewhere", attempts: 1, claims: 1, leaseExpiresAt: Date.now() + 600_000 })
      .where(eq(variations.id, elsewhere!.id));

    const minFree = 4 * MiB;
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ CONCURRENCY: "2", STALL_MS: "600000", MIN_FREE_BYTES: String(minFree), FFMPEG_PATH: path, WORK_DIR: join(disk, "work") }),
    });
    cleanup.push(() => r.stop());
    await until("B's first variation to complete", async () => (await getVariationRows(stack.db, jobB.id)).some((v) => v.status === "completed"), 60_000);
    await until("only A's encode in hand", async () => r.runner.active === 1, 10_000);

    // Less free space than MIN_FREE_BYTES, unless B's cached source (and its samples) go.
    const { bavail, bsize } = await statfs(disk);
    const sourceBytes = (await stat(bClip)).size;
    await writeFile(join(disk, "filler"), Buffer.alloc(bavail * bsize - (minFree - Math.floor(sourceBytes / 2))));
    const jobC = await stack.user.createJob([await makeClip({ seconds: 1 })], 1);
    await until("C to complete while A's encode is still held", async () => (await getJobRow(stack.db, jobC.id))?.status === "completed", 60_000);
    expect((await getVariationRows(stack.db, jobA.id))[0]).toMatchObject({ status: "running" });

    await writeFile(join(ffDir, "open"), "");
    await until("A to complete", async () => (await getJobRow(stack.db, jobA.id))?.status === "completed", 60_000);
  });

  it("completes a job whose source did not fit beside other jobs' cached sources, by evicting them, without counting an attempt", async () => {
    const KiB = 1024;
    const { disk, ffDir, path } = await smallDiskAndHeldEncodes("held-fit");
    const jobA = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    await writeFile(join(ffDir, "hold"), jobA.id);
    // Job B's second variation is another runner's: B does not finish, so its (larger) source stays in this cache.
    const jobB = await stack.user.createJob([await makeClip({ seconds: 30 })], 2);
    const [, elsewhere] = await getVariationRows(stack.db, jobB.id);
    await stack.db
      .update(variations)
      .set({ status: "running", runnerId: "runner-elsewhere", attempts: 1, claims: 1, leaseExpiresAt: Date.now() + 600_000 })
      .where(eq(variations.id, elsewhere!.id));

    const minFree = 256 * KiB;
    const env = stack.runnerEnv({ CONCURRENCY: "2", STALL_MS: "600000", MIN_FREE_BYTES: String(minFree), FFMPEG_PATH: path, WORK_DIR: join(disk, "work") });
    const r = await startInProcessRunner({ env });
    cleanup.push(() => r.stop());
    await until("B's first variation to complete", async () => (await getVariationRows(stack.db, jobB.id)).some((v) => v.status === "completed"), 60_000);
    await until("only A's encode in hand", async () => r.runner.active === 1, 10_000);

    // Room to claim (above MIN_FREE_BYTES), but only for half of C's source unless B's cached source goes.
    const cClip = await makeClip({ seconds: 12 });
    const cBytes = (await stat(cClip)).size;
    const { bavail, bsize } = await statfs(disk);
    await writeFile(join(disk, "filler"), Buffer.alloc(bavail * bsize - (minFree + Math.floor(cBytes / 2))));
    const jobC = await stack.user.createJob([cClip], 1);
    const ended = await until("C to end while A's encode is still held", async () => {
      const j = await getJobRow(stack.db, jobC.id);
      return j?.status === "completed" || j?.status === "failed" ? j : null;
    }, 90_000);
    const [c] = await getVariationRows(stack.db, jobC.id);
    expect({ job: ended.status, status: c!.status, attempts: c!.attempts, error: c!.error }).toEqual({ job: "completed", status: "completed", attempts: 1, error: null });
    // It took B's cached source going (not some room of its own): the source is gone from B's directory.
    expect(await readdir(join(ownWorkDir(join(disk, "work"), env.RUNNER_ID!), jobB.id)).catch(() => [])).not.toContain(`src-${elsewhere!.sourceId}`);
    expect((await getVariationRows(stack.db, jobA.id))[0]).toMatchObject({ status: "running" });

    await writeFile(join(ffDir, "open"), "");
    await until("A to complete", async () => (await getJobRow(stack.db, jobA.id))?.status === "completed", 60_000);
  });
});
