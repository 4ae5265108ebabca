import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { runners } from "../../db/schema";
import { MARKER, PREDECESSOR_QUIET_MS } from "../../runner/workdir";
import { makeClip } from "../helpers/clips";
import { startDbProxy } from "../helpers/db-proxy";
import { filesUnder, startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { BlobClient, BlobError } from "../../runner/blobs";
import { isAlive, makeRealTimeFfmpeg, makeStubbornFfmpeg, startInProcessRunner, startRunnerProcess, writeFfmpegStandIn, type RunnerProcess } from "../helpers/runner";
import { getJobRow, getVariationRows, recordedKeys } from "../helpers/seed";

let stack: EdgeStack;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  stack = await startEdgeStack("runner_recovery");
}, 120_000);
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
  await stack.settleLeftovers();
});
afterAll(() => stack?.close());

function runnerProcess(env: Record<string, string>): RunnerProcess {
  const r = startRunnerProcess(stack.runnerEnv(env));
  cleanup.push(() => r.destroy());
  return r;
}

/** Every claim a runner logged, as `<variation>:<attempt>`. */
const claimedIn = (logs: string) => [...logs.matchAll(/claimed variation variation=(\w+) .*?attempt=(\d+)/g)].map((m) => `${m[1]}:${m[2]}`);

describe("several runners, crashes, outages and shutdowns", { timeout: 180_000 }, () => {
  it("never hands one variation to two runners sharing a database", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 1 })], 16);
    // No crash here: a lease long enough that a stalled event loop on a loaded machine never expires one.
    const env = { CONCURRENCY: "2", POLL_MS: "50", LEASE_MS: "15000" };
    const a = runnerProcess({ ...env, WORK_DIR: await stack.workDir() });
    const b = runnerProcess({ ...env, WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 120_000, 200);

    const rows = await getVariationRows(stack.db, job.id);
    expect(rows.filter((r) => r.status !== "completed")).toEqual([]);
    // On a loaded machine an attempt may end in a retryable error (the edge answering too slowly, say): the
    // variation is then claimed again as its next attempt, by either runner. What must never happen is one attempt
    // handed out twice: every (variation, attempt) claimed exactly once — also after a hand-back, which refunds the
    // cap's count but never the attempt number — and no runner heard of more claims than the rows count.
    const claims = [...claimedIn(a.logs()), ...claimedIn(b.logs())];
    if (claims.length > 16) {
      const why = (a.logs() + b.logs()).split("\n").filter((l) => /retryable|lost|handed back|edge unavailable/.test(l));
      console.log(`variations claimed again (${claims.length} claims):\n${why.join("\n")}`);
    }
    expect(claims.length - new Set(claims).size).toBe(0);
    expect(claims.length).toBeLessThanOrEqual(rows.reduce((n, r) => n + r.claims, 0));
    expect(new Set(claims.map((c) => c.split(":")[0])).size).toBe(16);
    const keys = (await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort();
    expect(keys).toEqual(recordedKeys(rows));
  });

  it("lets another runner finish the work of a runner killed mid-encode once its lease expires, with one output and no orphan", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 30 })], 1);
    const deadDir = await stack.workDir();
    const env = { LEASE_MS: "1500", WORK_DIR: deadDir };
    // The doomed runner's encode runs in real time (-re): 30 s, so FFmpeg is still encoding when its runner dies
    // however fast this machine encodes (the heir's runs at full speed).
    const realTime = await makeRealTimeFfmpeg();
    const doomed = runnerProcess({ ...env, FFMPEG_PATH: realTime.path });
    cleanup.push(() => rm(realTime.dir, { recursive: true, force: true }));
    const pid = Number(/pid=(\d+)/.exec(await doomed.waitForLog(/ffmpeg started/, 60_000))![1]);
    const [first] = await until("the encode to be under way", async () => {
      const rows = await getVariationRows(stack.db, job.id);
      return rows[0]?.progress ? rows : null;
    }, 60_000, 50);
    expect(await isAlive(pid)).toBe(true);

    doomed.child.kill("SIGKILL");
    await doomed.exited;
    // FFmpeg sits in its own process group, but its progress pipe broke with the runner: it must not keep encoding.
    await until("the orphaned FFmpeg to exit", async () => !(await isAlive(pid)), 5_000);

    const heir = runnerProcess({ WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 90_000, 200);
    const [row] = await getVariationRows(stack.db, job.id);
    expect(row).toMatchObject({ id: first!.id, status: "completed", attempts: 2 });
    expect(row!.runnerId).toBe(/\[(test-\w+)\]/.exec(heir.logs())![1]);
    expect((await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort()).toEqual(recordedKeys([row!]));

    // The dead runner's partial file is still on its disk; a runner started there once the dead one's mark is
    // quiet (a live runner touches its own every minute) sweeps it at start-up.
    expect((await filesUnder(deadDir)).some((f) => f.endsWith(".part.mp4"))).toBe(true);
    const quietSince = (Date.now() - PREDECESSOR_QUIET_MS - 60_000) / 1000;
    for (const name of await readdir(deadDir)) {
      if (name.startsWith("runner-")) await utimes(join(deadDir, name, MARKER), quietSince, quietSince);
    }
    const restarted = runnerProcess(env);
    await restarted.waitForLog(/runner started/);
    expect(await filesUnder(deadDir)).toEqual([]);
  });

  it("removes the files of a predecessor that died just before its start once its mark goes quiet, without waiting for a restart; a live neighbour's stay", async () => {
    const workDir = await stack.workDir();
    const runner = await startInProcessRunner({ env: stack.runnerEnv({ WORK_DIR: workDir }), predecessorSweepMs: 200 });
    cleanup.push(() => runner.stop());
    // A container restarted at once: the dead runner's mark was touched seconds before this start, so the start-up
    // sweep kept it.
    const dead = join(workDir, "runner-dead-predecessor");
    // Above the kernel's pid_max: no process can have it, now or later.
    const deadPid = Number(await readFile("/proc/sys/kernel/pid_max", "utf8")) + 1;
    const neighbour = join(workDir, "runner-live-neighbour");
    for (const [dir, mark] of [
      [dead, { host: hostname(), pid: deadPid, runnerId: "dead-predecessor" }],
      [neighbour, { host: "another-host", pid: 1, runnerId: "live-neighbour" }],
    ] as const) {
      await mkdir(join(dir, "job1"), { recursive: true });
      await writeFile(join(dir, "job1", "source"), "cached source bytes");
      await writeFile(join(dir, MARKER), JSON.stringify(mark));
    }
    // Several sweeps (one per 200 ms) leave a dead runner's directory alone while its mark is fresh.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await filesUnder(dead)).length).toBeGreaterThan(0);
    // Its mark goes quiet while this runner runs.
    const quietSince = (Date.now() - PREDECESSOR_QUIET_MS - 1000) / 1000;
    await utimes(join(dead, MARKER), quietSince, quietSince);
    await until("the dead predecessor's files to be removed", async () => ((await filesUnder(dead)).length === 0 ? true : null), 15_000);
    expect(await filesUnder(neighbour)).toEqual(expect.arrayContaining([expect.stringContaining("source")]));
  });

  it("keeps its own directory's mark fresh while idle however long its poll interval, so neighbours never take it for a dead predecessor's", async () => {
    const workDir = await stack.workDir();
    const runner = await startInProcessRunner({ env: stack.runnerEnv({ WORK_DIR: workDir, POLL_MS: "600000" }), markTouchMs: 100 });
    cleanup.push(() => runner.stop());
    const mark = join(workDir, (await readdir(workDir)).find((n) => n.startsWith("runner-"))!, MARKER);
    const hourAgo = (Date.now() - 3_600_000) / 1000;
    await utimes(mark, hourAgo, hourAgo);
    // No tick comes for 10 minutes: the touch does not wait for one.
    await until("the mark to be touched again", async () => (Date.now() - (await stat(mark)).mtimeMs < 60_000 ? true : null), 10_000);
  });

  it("hands running work back to the queue on SIGTERM without counting an attempt, leaves no file in WORK_DIR and exits 0 quickly", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 180 })], 1);
    const workDir = await stack.workDir();
    // In real time (-re): still encoding when the SIGTERM comes however fast this machine encodes.
    const realTime = await makeRealTimeFfmpeg();
    const runner = runnerProcess({ WORK_DIR: workDir, STOP_GRACE_MS: "2000", FFMPEG_PATH: realTime.path });
    cleanup.push(() => rm(realTime.dir, { recursive: true, force: true }));
    const pid = Number(/pid=(\d+)/.exec(await runner.waitForLog(/ffmpeg started/, 60_000))![1]);
    await until("the encode to be under way", async () => (await getVariationRows(stack.db, job.id))[0]?.progress, 60_000, 50);
    const runnerId = /\[(test-\w+)\]/.exec(runner.logs())![1]!;
    expect(await isAlive(pid)).toBe(true);
    expect(await stack.db.select().from(runners).where(eq(runners.id, runnerId))).toHaveLength(1);

    const t0 = performance.now();
    runner.child.kill("SIGTERM");
    const exit = await runner.exited;
    const elapsed = performance.now() - t0;
    expect(exit.code).toBe(0);
    expect(elapsed).toBeLessThan(10_000);
    expect(runner.logs()).toMatch(/stop stage q .*reason=shutdown/);
    expect(await isAlive(pid)).toBe(false);
    const [row] = await getVariationRows(stack.db, job.id);
    expect(row).toMatchObject({ status: "queued", attempts: 0, leaseExpiresAt: null, progress: 0 });
    expect(await stack.db.select().from(runners).where(eq(runners.id, runnerId))).toEqual([]);
    // Nothing left behind, not even the cached source: the next container has another runner id and a WORK_DIR
    // volume outlives containers.
    expect(await filesUnder(workDir)).toEqual([]);

    // The work is really back: the next runner does it as a first attempt.
    runnerProcess({ WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 90_000, 200);
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "completed", attempts: 1 });
  });

  it("hands back a variation stopped in its upload on shutdown, within the budget, while the edge hangs the upload and the cleanup delete", async () => {
    // An edge that takes the connection and never answers: where the upload's cleanup DELETE goes.
    const blackhole = createServer(() => {});
    await new Promise<void>((r) => blackhole.listen(0, "127.0.0.1", () => r()));
    cleanup.push(() => new Promise<void>((r) => (blackhole.closeAllConnections(), blackhole.close(() => r()))));
    const hangingUrl = `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}`;
    let uploading!: () => void;
    const inUpload = new Promise<void>((r) => (uploading = r));
    class HangingEdge extends BlobClient {
      readonly hanging = new BlobClient({ edgeUrl: hangingUrl, token: "x" });
      // The output's upload hangs until the stop aborts it (the job's thumbnail goes up as usual).
      override async upload(...args: Parameters<BlobClient["upload"]>): Promise<{ size: number }> {
        const [key, , signal] = args;
        if (!/^outputs\/.*\.mp4$/.test(key)) return super.upload(...args);
        uploading();
        return new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true }));
      }
      override delete(...args: Parameters<BlobClient["delete"]>) {
        return this.hanging.delete(...args);
      }
    }
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ WORK_DIR: await stack.workDir() }),
      blobs: (c) => new HangingEdge({ edgeUrl: c.EDGE_URL, token: c.RUNNER_TOKEN }),
    });
    await inUpload;
    const t0 = performance.now();
    await r.stop();
    expect(performance.now() - t0).toBeLessThan(10_000);
    // Handed back without counting an attempt, not left running until its lease runs out.
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "queued", attempts: 0, leaseExpiresAt: null });
  });

  it("stops FFmpeg first and exits within Docker's 10 s on SIGTERM even while the database does not answer", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 180 })], 1);
    const proxy = await startDbProxy(stack.libsqlUrl);
    cleanup.push(() => proxy.close());
    // In real time (-re): still encoding when the SIGTERM comes however fast this machine encodes.
    const realTime = await makeRealTimeFfmpeg();
    const runner = runnerProcess({ LIBSQL_URL: proxy.url, WORK_DIR: await stack.workDir(), STOP_GRACE_MS: "2000", LEASE_MS: "30000", FFMPEG_PATH: realTime.path });
    cleanup.push(() => rm(realTime.dir, { recursive: true, force: true }));
    const pid = Number(/pid=(\d+)/.exec(await runner.waitForLog(/ffmpeg started/, 60_000))![1]);
    await until("the encode to be under way", async () => (await getVariationRows(stack.db, job.id))[0]?.progress, 60_000, 50);
    expect(await isAlive(pid)).toBe(true);
    // From now on every database request hangs for a minute: the tick in flight, the hand-back, the deregistration.
    proxy.setRule(() => ({ holdMs: 60_000 }));
    await until("a request to be held", async () => proxy.held.length > 0, 10_000, 20);

    const t0 = performance.now();
    runner.child.kill("SIGTERM");
    await until("FFmpeg to be gone", async () => !(await isAlive(pid)), 6_000, 20);
    const ffmpegGoneMs = performance.now() - t0;
    const exit = await runner.exited;
    const elapsed = performance.now() - t0;
    expect(exit.code).toBe(0);
    expect(elapsed).toBeLessThan(10_000);
    // The stop sequence did not wait behind the database (q is answered in well under a second).
    expect(ffmpegGoneMs).toBeLessThan(3_000);
    expect(runner.logs()).toMatch(/stop stage q .*reason=shutdown/);
  });

  it("stops an encode that makes no progress for STALL_MS, retries it and fails it as \"encode stalled\" at the cap", async () => {
    const wedged = await makeStubbornFfmpeg();
    cleanup.push(() => rm(dirname(wedged.path), { recursive: true, force: true }));
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const runner = runnerProcess({ FFMPEG_PATH: wedged.path, STALL_MS: "1500", STOP_GRACE_MS: "300", WORK_DIR: await stack.workDir() });
    await until("the job to end", async () => (await getJobRow(stack.db, job.id))?.status === "failed", 60_000, 100);
    const [row] = await getVariationRows(stack.db, job.id);
    expect(row).toMatchObject({ status: "failed", attempts: 3, error: "encode stalled (no progress for 2 s)" });
    expect((await stack.user.getJob(job.id)).error).toMatch(/encode stalled/);
    expect(runner.logs().match(/encode stalled: stopping it/g)).toHaveLength(3);
    for (const pid of runner.ffmpegPids()) expect(await isAlive(pid)).toBe(false);
  });

  it("kills FFmpeg at once on a second signal instead of waiting out the grace periods", async () => {
    const stub = await makeStubbornFfmpeg();
    cleanup.push(() => rm(dirname(stub.path), { recursive: true, force: true }));
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const runner = runnerProcess({ FFMPEG_PATH: stub.path, STOP_GRACE_MS: "5000", WORK_DIR: await stack.workDir() });
    await runner.waitForLog(/ffmpeg started/);
    const pid = runner.ffmpegPids()[0]!;

    runner.child.kill("SIGTERM");
    await runner.waitForLog(/stop stage q/);
    const t0 = performance.now();
    runner.child.kill("SIGTERM");
    await runner.exited;
    // Without the second signal this would take 2 × 5 s.
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(runner.logs()).toMatch(/second signal: killing FFmpeg processes now/);
    expect(runner.logs()).toMatch(/stop stage sigkill \(immediate\)/);
    expect(await isAlive(pid)).toBe(false);
    expect((await getVariationRows(stack.db, job.id))[0]?.status).toBe("queued");
  });

  it("does not burn a variation's attempts while the edge cannot serve its source, and does it once the edge is back", async () => {
    let failures = 0;
    // The edge answers 503 for the first three downloads (e.g. while it is being redeployed).
    class FlakyEdge extends BlobClient {
      override async download(...args: Parameters<BlobClient["download"]>) {
        if (failures < 3) {
          failures++;
          throw new BlobError(`download ${args[0]}: HTTP 503 edge restarting`, 503, true);
        }
        return super.download(...args);
      }
    }
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ WORK_DIR: await stack.workDir() }),
      blobs: (c) => new FlakyEdge({ edgeUrl: c.EDGE_URL, token: c.RUNNER_TOKEN }),
    });
    cleanup.push(() => r.stop());
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000, 100);
    expect(failures).toBe(3);
    // Three failed tries would have hit the attempt cap if they counted.
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "completed", attempts: 1 });
    const pauses = r.lines.filter((l) => l.includes("edge trouble: pausing claims")).map((l) => Number(/ms=(\d+)/.exec(l)![1]));
    expect(pauses).toEqual([1000, 2000, 4000]);
  });

  it("claims nothing while the edge refuses this runner's token, says so on /healthz, and leaves the work to a runner with the right token", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    // RUNNER_TOKEN rotated on the edge before this host was updated. Claimed, every variation would fail here (before:
    // each refusal counted an attempt, and three failed the video for good).
    const stale = runnerProcess({ RUNNER_TOKEN: "rotated-away-runner-token", METRICS_PORT: "0", WORK_DIR: await stack.workDir() });
    const port = Number(/metrics listening port=(\d+)/.exec(await stale.waitForLog(/metrics listening/))![1]);
    await stale.waitForLog(/runner started/);
    await stale.waitForLog(/refuses this runner's RUNNER_TOKEN: not claiming/);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ ok: false, edgeRefusesToken: true });
    // It ticks every 100 ms with a free slot and a queued variation: a second is ten chances to claim. (An edge slower
    // to answer than the start-up waits could let a first claim through: that one is handed back, attempt refunded.)
    await new Promise((res) => setTimeout(res, 1000));
    await stale.destroy();
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "queued", attempts: 0, error: null });

    runnerProcess({ WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000, 100);
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "completed", attempts: 1 });
  });

  it("claims nothing while this machine's clock is a minute off from the edge's, says so on /healthz, and claims once it is back in step", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    // A minute ahead: its leases would look expired to it a minute early, and it would take over other runners' work.
    const realNow = Date.now.bind(Date);
    const ahead = vi.spyOn(Date, "now").mockImplementation(() => realNow() + 60_000);
    cleanup.push(async () => ahead.mockRestore());
    const r = await startInProcessRunner({ env: stack.runnerEnv({ WORK_DIR: await stack.workDir() }) });
    cleanup.push(() => r.stop());
    // It ticks every 100 ms with a free slot and a queued variation: two seconds is twenty chances to claim.
    await new Promise((res) => setTimeout(res, 2000));
    const health = r.runner.health();
    expect(health.ok).toBe(false);
    expect(Math.abs(health.clockSkewMs! + 60_000)).toBeLessThan(2000);
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "queued", attempts: 0 });
    expect(r.lines.filter((l) => l.includes("clock is off from the edge's"))).toHaveLength(1);

    // Synced: the next check of the edge (every 10 s while the clock is off) lets it claim again.
    ahead.mockRestore();
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000, 100);
    expect(r.lines.some((l) => l.includes("clock in step with the edge's again"))).toBe(true);
    expect(r.runner.health()).toMatchObject({ ok: true });
  });

  it("hands a finished encode back, instead of failing it, when the edge refuses the runner's token at the upload", async () => {
    let refusals = 0;
    class RotatedToken extends BlobClient {
      override async upload(...args: Parameters<BlobClient["upload"]>) {
        // The variation's output (the job's thumbnail goes up through the same client, best effort).
        if (refusals < 1 && args[0].endsWith(".mp4")) {
          refusals++;
          throw new BlobError(`upload ${args[0]}: HTTP 401 This endpoint is for runners`, 401, false, "runner_unauthorized");
        }
        return super.upload(...args);
      }
    }
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ WORK_DIR: await stack.workDir() }),
      blobs: (c) => new RotatedToken({ edgeUrl: c.EDGE_URL, token: c.RUNNER_TOKEN }),
    });
    cleanup.push(() => r.stop());
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000, 100);
    expect(refusals).toBe(1);
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "completed", attempts: 1, error: null });
    expect(r.lines.some((l) => l.includes("refused this runner's RUNNER_TOKEN: variation handed back"))).toBe(true);
  });

  for (const broken of ["every call", "encodes"] as const) {
    it(`hands a video back, instead of failing it, when this runner's FFmpeg cannot run (${broken}: exit 127, a missing library), and completes it once FFmpeg works`, async () => {
      // A stand-in that fails like an FFmpeg whose shared libraries are gone (a bad image, a half-done upgrade) while
      // the marker file exists, and is the real FFmpeg otherwise.
      const { dir, path } = await writeFfmpegStandIn(
        "broken",
        (d) => `#!/bin/sh
if [ -e "${join(d, "broken")}" ]${broken === "encodes" ? ` && case " $* " in *" -progress "*) true;; *) false;; esac` : ""}; then
  echo "ffmpeg: error while loading shared libraries: libx264.so.164: cannot open shared object file: No such file or directory" >&2
  exit 127
fi
exec ffmpeg "$@"
`,
      );
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
      const runner = runnerProcess({ FFMPEG_PATH: path, POLL_MS: "200", WORK_DIR: await stack.workDir() });
      await runner.waitForLog(/runner started/);
      await writeFile(join(dir, "broken"), "");
      const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
      await runner.waitForLog(/local trouble: pausing claims/);
      // Not a verdict on the video: the attempt goes back to the queue (claims pause first, the hand-back follows).
      const handedBack = await until("the variation to be handed back", async () => {
        const [row] = await getVariationRows(stack.db, job.id);
        return row?.status !== "running" && row?.error ? row : null;
      }, 30_000, 50);
      expect(handedBack.status).toBe("queued");
      expect((await getJobRow(stack.db, job.id))?.status).not.toBe("failed");
      // What the user reads names no library or path; the runner's log keeps FFmpeg's own words for its operator.
      expect(handedBack.error).toMatch(/^(checking the video|encoding) failed: the runner could not start FFmpeg$/);
      expect(runner.logs()).toMatch(/local trouble: pausing claims .*detail=.*error while loading shared libraries/);

      await rm(join(dir, "broken"));
      await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000, 100);
      const [row] = await getVariationRows(stack.db, job.id);
      expect(row).toMatchObject({ status: "completed" });
      expect(row!.attempts).toBeGreaterThanOrEqual(2);
    });
  }
});
