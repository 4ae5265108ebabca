import { readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BlobClient } from "../../runner/blobs";
import { makeClip } from "../helpers/clips";
import { filesUnder, startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { isAlive, makeRealTimeFfmpeg, makeStubbornFfmpeg, startInProcessRunner, startRunnerProcess, writeFfmpegStandIn, type RunnerProcess } from "../helpers/runner";
import { getJobRow, getVariationRows, recordedKeys } from "../helpers/seed";

let stack: EdgeStack;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  stack = await startEdgeStack("runner_cancel");
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

const stagesIn = (logs: string) => [...logs.matchAll(/stop stage (\w+)/g)].map((m) => m[1]);

describe("cancelling a running job", { timeout: 180_000 }, () => {
  it("stops FFmpeg with q alone, answers the cancel as done, keeps the finished variation, and leaves no partial file", async () => {
    // Encodes read their source in real time (-re), so the long one is still encoding when the short one is
    // completed (measured, uploaded, recorded) however fast this machine encodes: 180 s, not the 2-3 s of a fast core.
    const job = await stack.user.createJob([await makeClip({ seconds: 2 }), await makeClip({ seconds: 180 })], 1);
    const workDir = await stack.workDir();
    const ffmpeg = await makeRealTimeFfmpeg();
    const runner = runnerProcess({ CONCURRENCY: "2", WATCH_MS: "500", STOP_GRACE_MS: "2000", FFMPEG_PATH: ffmpeg.path, WORK_DIR: workDir });
    // After the runner is gone (cleanups run in order): it must not find its FFmpeg missing.
    cleanup.push(() => rm(ffmpeg.dir, { recursive: true, force: true }));

    const long = await until("the long encode to be under way (short one done)", async () => {
      const rows = await getVariationRows(stack.db, job.id);
      const [short, long] = [rows.find((r) => r.sourceId === job.files[0]!.id), rows.find((r) => r.sourceId === job.files[1]!.id)];
      return short?.status === "completed" && long?.status === "running" && long.progress > 0 ? long : null;
    }, 60_000, 50);
    const pid = Number(/pid=(\d+)/.exec(await runner.waitForLog(new RegExp(`ffmpeg started variation=${long.id}`)))![1]);
    expect(await isAlive(pid)).toBe(true);

    const res = await stack.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    // 200: the job was terminal within the edge's wait (CANCEL_WAIT_MS), not left cancelling (202).
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({
      status: "cancelled",
      previousStatus: "processing",
      completedVariations: 1,
      cancelledVariations: 1,
      downloadUrl: `/api/jobs/${job.id}/download`,
    });
    expect(body.cancelledAt).toMatch(/Z$/);

    const [after] = (await getVariationRows(stack.db, job.id)).filter((r) => r.id === long.id);
    expect(after).toMatchObject({ status: "cancelled", stopStage: "q", outputKey: null });
    // q alone: FFmpeg exited within STOP_GRACE_MS of it, before the SIGTERM stage was needed.
    expect(stagesIn(runner.logs())).toEqual(["q"]);
    expect(await isAlive(pid)).toBe(false);
    expect((await filesUnder(workDir)).filter((f) => f.endsWith(".mp4"))).toEqual([]);
    const stored = (await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort();
    const completed = (await getVariationRows(stack.db, job.id)).filter((r) => r.status === "completed");
    expect(completed).toHaveLength(1);
    expect(stored).toEqual(recordedKeys(completed));
  });

  it("SIGKILLs an FFmpeg that ignores q and SIGTERM after the two grace periods, logging each stage once", async () => {
    const stub = await makeStubbornFfmpeg();
    cleanup.push(() => rm(dirname(stub.path), { recursive: true, force: true }));
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const workDir = await stack.workDir();
    const runner = runnerProcess({ FFMPEG_PATH: stub.path, STOP_GRACE_MS: "300", WORK_DIR: workDir });
    const pid = Number(/pid=(\d+)/.exec(await runner.waitForLog(/ffmpeg started/))![1]);
    // The stand-in reports progress only once its traps are set: a SIGTERM before that would kill the shell outright.
    await until("the stand-in to report progress", async () => ((await getVariationRows(stack.db, job.id))[0]?.progress ?? 0) > 0, 30_000, 20);

    const res = await stack.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "cancelled", cancelledVariations: 1 });
    expect(stagesIn(runner.logs())).toEqual(["q", "sigterm", "sigkill"]);
    const afterMs = [...runner.logs().matchAll(/stop stage \w+ .*after_ms=(\d+)/g)].map((m) => Number(m[1]));
    expect(afterMs[1]).toBeGreaterThanOrEqual(300);
    expect(afterMs[2]).toBeGreaterThanOrEqual(600);
    expect((await readFile(stub.signalsLog, "utf8")).trim().split("\n")).toEqual(["TERM"]);
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "cancelled", stopStage: "sigkill" });
    expect(await isAlive(pid)).toBe(false);
    expect((await filesUnder(workDir)).filter((f) => f.endsWith(".mp4"))).toEqual([]);
  });

  it("completes a variation whose FFmpeg finished before the cancel arrived (completed wins), and so the job", async () => {
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    // Hold the upload so the cancel lands after FFmpeg exited 0 but before the result is recorded.
    class GatedBlobs extends BlobClient {
      override async upload(...args: Parameters<BlobClient["upload"]>) {
        if (args[0].startsWith("outputs/")) await gate;
        return super.upload(...args);
      }
    }
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ WORK_DIR: await stack.workDir() }),
      blobs: (c) => new GatedBlobs({ edgeUrl: c.EDGE_URL, token: c.RUNNER_TOKEN }),
    });
    cleanup.push(() => r.stop());
    // FFmpeg exited 0 and the output is measured: what is left before the record is the (held) upload.
    await r.waitForLog(/variation measured/);

    const cancel = stack.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    await r.waitForLog(/cancel requested after FFmpeg finished: completing anyway/);
    openGate();
    const res = await cancel;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "completed", completedVariations: 1, cancelledVariations: 0 });
    expect(r.lines.some((l) => l.includes("stop stage"))).toBe(false);
    expect((await getVariationRows(stack.db, job.id))[0]).toMatchObject({ status: "completed", stopStage: null });
  });

  it("completes a variation with its earlier draw when a cancel stops the re-draw's encode (completed wins), and so the job", async () => {
    // The first encode is real; every later one (the re-draw) makes a little progress and then hangs until it is
    // stopped, so the cancel always finds the re-draw encoding, however fast this machine is.
    const { dir, path } = await writeFfmpegStandIn(
      "redraw-hangs",
      (d) => `#!/bin/sh
case " $* " in
  *" -progress "*)
    echo + >> "${join(d, "encodes")}"
    if [ "$(wc -l < "${join(d, "encodes")}")" -gt 1 ]; then
      echo "out_time_us=1000000"
      echo "progress=continue"
      while :; do sleep 0.05; done
    fi ;;
esac
exec ffmpeg "$@"
`,
    );
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const firstSeed = (await getVariationRows(stack.db, job.id))[0]!.seed;
    // SSIM floor 1: the first draw is always re-drawn (once).
    const r = await startInProcessRunner({
      env: stack.runnerEnv({ QUALITY_SSIM_FLOOR: "1", MAX_REDRAWS: "1", STOP_GRACE_MS: "500", FFMPEG_PATH: path, WORK_DIR: await stack.workDir() }),
    });
    cleanup.push(() => r.stop());
    await r.waitForLog(/variation re-drawn/, 60_000);
    await until("the re-draw's encode to run", async () => (await readFile(join(dir, "encodes"), "utf8")).trim().split("\n").length === 2, 30_000, 20);

    const res = await stack.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    expect([200, 202]).toContain(res.status);
    const done = await until("the job to finish", async () => ((j) => (j && !["processing", "cancelling"].includes(j.status) ? j : null))(await getJobRow(stack.db, job.id)), 60_000);
    expect(done.status).toBe("completed");
    const [row] = await getVariationRows(stack.db, job.id);
    expect(row).toMatchObject({ status: "completed", seed: firstSeed, stopStage: null });
    expect(row!.redrawReason).toMatch(/the re-draw was stopped/);
    expect(r.lines.some((l) => /re-draw stopped: completing with an earlier draw/.test(l))).toBe(true);
  });
});
