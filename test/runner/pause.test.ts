import { rm } from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../helpers/clips";
import { filesUnder, startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { isAlive, makeRealTimeFfmpeg, startRunnerProcess, type RunnerProcess } from "../helpers/runner";
import { getJobRow, getVariationRows, recordedKeys } from "../helpers/seed";

let stack: EdgeStack;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  stack = await startEdgeStack("runner_pause");
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

describe("pausing and resuming a running job", { timeout: 240_000 }, () => {
  it("stops FFmpeg with q alone like a cancel, queues the stopped variation with its attempt refunded, and completes the job after the resume", async () => {
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

    const res = await stack.user.call(`/api/jobs/${job.id}/pause`, { method: "POST" });
    // 200: the job was paused within the edge's wait (CANCEL_WAIT_MS), not left pausing (202).
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "paused", previousStatus: "processing", completedVariations: 1, cancelledVariations: 0 });

    const [stopped] = (await getVariationRows(stack.db, job.id)).filter((r) => r.id === long.id);
    expect(stopped).toMatchObject({ status: "queued", attempts: 0, outputKey: null, progress: 0 });
    expect(await isAlive(pid)).toBe(false);
    // The same stop as a cancel: q alone, FFmpeg exited before the SIGTERM stage was needed.
    expect([...runner.logs().matchAll(/stop stage (\w+)/g)].map((m) => m[1])).toEqual(["q"]);
    expect((await filesUnder(workDir)).filter((f) => f.endsWith(".mp4"))).toEqual([]);
    expect((await getJobRow(stack.db, job.id))!.status).toBe("paused");

    // The resumed encode need not last as long as its clip: nothing races it any more.
    await ffmpeg.fullSpeed();
    const resumed = await stack.user.call(`/api/jobs/${job.id}/resume`, { method: "POST" });
    expect(resumed.status).toBe(200);
    expect(await resumed.json()).toMatchObject({ status: "processing" });
    const done = await until("the resumed job to complete", async () => {
      const row = await getJobRow(stack.db, job.id);
      return row && row.status !== "processing" ? row : null;
    }, 180_000, 200);
    expect(done.status).toBe("completed");
    const rows = await getVariationRows(stack.db, job.id);
    expect(rows.map((r) => r.status)).toEqual(["completed", "completed"]);
    // Paused once, refunded: the resumed encode is its first counted attempt.
    expect(rows.find((r) => r.id === long.id)!.attempts).toBe(1);
    // Nothing of the stopped attempt was stored: the bucket holds exactly the two recorded outputs.
    const stored = (await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort();
    expect(stored).toEqual(recordedKeys(rows));
  });
});
