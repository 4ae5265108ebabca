import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../helpers/clips";
import { isAlive } from "../helpers/runner";
import { expectCleanEndState, report, startFaultStack, until, variationRows, type FaultStack } from "./support";
import { recordedKeys } from "../helpers/seed";

let fs: FaultStack;
beforeAll(async () => {
  // Two runners; a 3 s lease so the survivor takes over within seconds of the kill.
  fs = await startFaultStack({ label: "killed", runners: 2, runnerEnv: { LEASE_MS: "3000" } });
});
afterAll(() => fs?.stop());

describe("fault: a runner is SIGKILLed mid-encode while a second runner is alive", () => {
  it("has the other runner finish the variation after the lease expires: one output each, no orphan, job completed", async () => {
    // Long enough (several seconds of encoding at 640x360) that an orphan would visibly encode on.
    const clip = await makeClip({ seconds: 60, width: 640, height: 360 });
    const job = await fs.user.createJob([clip], 3);

    // Wait for an encode with real progress, then kill the runner that owns it (its whole process group: the
    // Node process; FFmpeg sits in a group of its own and dies by the parent-death signal set at its start).
    const re = /^\[(runner-\d)\] .*ffmpeg started variation=(\w+) attempt=\d+ pid=(\d+)/;
    const started = await fs.waitForLog(re);
    const [, victim, variationId, pid] = re.exec(started)!;
    await until("the encode to report progress", async () => {
      const [row] = await fs.db.all<{ progress: number }>(sql`SELECT progress FROM variations WHERE id = ${variationId}`);
      return row && row.progress > 0;
    }, 30_000, 50);
    const victimPid = fs.stack.pids[victim!]!;
    const survivor = victim === "runner-1" ? "runner-2" : "runner-1";
    expect(await isAlive(Number(pid))).toBe(true); // really mid-encode when the kill is sent
    const killedAt = Date.now();
    process.kill(-victimPid, "SIGKILL");

    const orphanExitMs = await until("the orphaned FFmpeg to exit", async () => !(await isAlive(Number(pid))) && Date.now() - killedAt, 10_000, 20);
    expect(orphanExitMs).toBeLessThan(2000);
    const takeover = await fs.waitForLog(new RegExp(`^\\[${survivor}\\] .*claimed variation variation=${variationId}`), 30_000);
    const takeoverMs = Date.now() - killedAt;
    await until("the job to complete", async () => (await fs.user.getJob(job.id)).status === "completed", 120_000, 200);

    const rows = await variationRows(fs.db, [job.id]);
    const taken = rows.find((r) => r.id === variationId)!;
    expect(taken.status).toBe("completed");
    expect(taken.attempts).toBe(2);
    expect(rows.every((r) => r.status === "completed")).toBe(true);
    // Exactly one object per variation under the job's prefix, each the recorded one.
    const listed = (await fs.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort();
    expect(listed).toEqual(recordedKeys(rows));
    const end = await expectCleanEndState(fs, [job.id]);
    const survivorEncodeMs = /ffmpeg finished variation=\w+ ms=(\d+)/.exec(
      fs.linesOf(survivor).find((l) => l.includes(`ffmpeg finished variation=${variationId}`)) ?? "",
    )?.[1];
    report("runner SIGKILLed mid-encode", {
      killed: `${victim} (pid ${victimPid}) while FFmpeg pid ${pid} encoded variation ${variationId}`,
      orphanedFfmpegExitedAfterMs: orphanExitMs,
      sameEncodeOnSurvivorMs: survivorEncodeMs,
      takenOverBy: survivor,
      takeoverAfterMs: takeoverMs,
      takeoverLine: takeover.slice(0, 160),
      attempts: rows.map((r) => r.attempts),
      outputs: listed.length,
      end,
    });
  });
});
