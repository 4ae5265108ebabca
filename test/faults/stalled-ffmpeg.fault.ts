import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../helpers/clips";
import { makeStubbornFfmpeg } from "../helpers/runner";
import { expectCleanEndState, report, startFaultStack, until, variationRows, type FaultStack } from "./support";

let fs: FaultStack;
let standIn: { path: string; signalsLog: string };
beforeAll(async () => {
  // A wedged encode: the stand-in reports progress once, then makes none and ignores q and SIGTERM.
  standIn = await makeStubbornFfmpeg();
  fs = await startFaultStack({ label: "stalled", runners: 1, runnerEnv: { FFMPEG_PATH: standIn.path, STALL_MS: "2000", STOP_GRACE_MS: "500" } });
});
afterAll(async () => {
  await fs?.stop();
  if (standIn) await rm(dirname(standIn.path), { recursive: true, force: true });
});

describe("fault: FFmpeg stops making progress", () => {
  it("stops the wedged encode, retries it, and ends the job as failed with \"encode stalled\"", async () => {
    const t0 = Date.now();
    const job = await fs.user.createJob([await makeClip({ seconds: 2 })], 1);
    await until("the job to end", async () => ["completed", "failed", "cancelled"].includes((await fs.user.getJob(job.id)).status), 90_000, 200);
    const endedMs = Date.now() - t0;
    const [row] = await variationRows(fs.db, [job.id]);
    expect(row).toMatchObject({ status: "failed", attempts: 3, error: "encode stalled (no progress for 2 s)" });
    const view = await fs.user.getJob(job.id);
    expect(view.status).toBe("failed");
    expect(view.error).toMatch(/encode stalled/);
    const stops = fs.linesOf("runner").filter((l) => /encode stalled: stopping it/.test(l)).length;
    expect(stops).toBe(3);
    const end = await expectCleanEndState(fs, [job.id], [dirname(standIn.path)]);
    report("wedged FFmpeg", { endedMs, attempts: row!.attempts, reason: row!.error, watchdogStops: stops, end });
  });
});
