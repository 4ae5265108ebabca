import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../helpers/clips";
import { expectCleanEndState, report, startFaultStack, until, variationRows, type FaultStack } from "./support";

const OUTAGE_MS = 10_000;

let fs: FaultStack;
beforeAll(async () => {
  // A lease longer than the outage (the product default is 30 s): runners should keep the work they hold.
  fs = await startFaultStack({ label: "dbdown", runners: 2, runnerEnv: { LEASE_MS: "15000" } });
});
afterAll(() => fs?.stop());

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

const errorsOf = (m: Map<string, number>) => m.get("runner_db_errors_total") ?? 0;

describe("fault: the libSQL server is stopped for 10 s mid-job and restarted", () => {
  it("keeps runners and edge alive without spinning, answers 503 on /api/health meanwhile, and completes the job with nothing lost or duplicated", async () => {
    const clip = await makeClip({ seconds: 6, width: 320, height: 240 });
    const job = await fs.user.createJob([clip], 8);
    const runnerPids = [fs.stack.pids["runner-1"]!, fs.stack.pids["runner-2"]!];

    // Mid-job: some variations done, others in the runners' hands.
    await until("2 completed variations", async () => (await fs.user.getJob(job.id)).completedVariations >= 2, 60_000, 50);
    const before = await variationRows(fs.db, [job.id]);
    const errorsBefore = await Promise.all([0, 1].map(async (i) => errorsOf(await fs.metrics(i))));
    const cpuBefore = await Promise.all(runnerPids.map(cpuSeconds));

    // A crash, not a clean shutdown: whatever was in flight is cut off.
    await fs.stack.stopDb("SIGKILL");
    const downAt = Date.now();
    const health: { status: number; ms: number }[] = [];
    const jobReads: { status: number; ms: number }[] = [];
    while (Date.now() - downAt < OUTAGE_MS) {
      for (const [path, into] of [["/api/health", health], [`/api/jobs/${job.id}`, jobReads]] as const) {
        const t0 = Date.now();
        const res = await fs.user.call(path, { signal: AbortSignal.timeout(15_000) });
        await res.arrayBuffer();
        into.push({ status: res.status, ms: Date.now() - t0 });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const cpuDuring = await Promise.all(runnerPids.map(cpuSeconds));
    const errorsDuring = await Promise.all([0, 1].map(async (i) => errorsOf(await fs.metrics(i))));
    await fs.stack.startDb();
    const upAt = Date.now();

    const healthyAfterMs = await until("/api/health to answer 200", async () => {
      const res = await fetch(`${fs.stack.edgeUrl}/api/health`);
      return res.status === 200 && Date.now() - upAt;
    }, 30_000, 100);
    await until("the job to finish", async () => ["completed", "failed", "cancelled"].includes((await fs.user.getJob(job.id)).status), 120_000, 200);

    // No crash loop: the very same runner processes are alive and still serving.
    for (const pid of runnerPids) expect(() => process.kill(pid, 0)).not.toThrow();
    expect(fs.linesOf("runner-1").concat(fs.linesOf("runner-2")).filter((l) => /fatal|exited/i.test(l))).toEqual([]);
    // /api/health said 503 throughout the outage, each answer quick (no request hanging on a dead database).
    expect(health.length).toBeGreaterThanOrEqual(5);
    expect(health.every((h) => h.status === 503)).toBe(true);
    expect(jobReads.every((h) => h.status === 503)).toBe(true);
    expect(Math.max(...health.map((h) => h.ms), ...jobReads.map((h) => h.ms))).toBeLessThan(9_000);
    // No busy spin: the Node runners used little CPU and made a bounded number of failed attempts.
    const outageS = OUTAGE_MS / 1000;
    const cpuShare = cpuDuring.map((c, i) => (c - cpuBefore[i]!) / outageS);
    const errorRate = errorsDuring.map((e, i) => (e - errorsBefore[i]!) / outageS);
    expect(Math.max(...cpuShare)).toBeLessThan(0.5);
    expect(Math.max(...errorRate)).toBeLessThan(20);

    const job2 = await fs.user.getJob(job.id);
    const rows = await variationRows(fs.db, [job.id]);
    const end = await expectCleanEndState(fs, [job.id]);
    report("libSQL server SIGKILLed for 10 s mid-job", {
      beforeOutage: before.map((r) => r.status),
      healthDuringOutage: `${health.length} probes, statuses ${[...new Set(health.map((h) => h.status))]}, slowest ${Math.max(...health.map((h) => h.ms))} ms`,
      jobReadsDuringOutage: `${jobReads.length} reads, statuses ${[...new Set(jobReads.map((h) => h.status))]}, slowest ${Math.max(...jobReads.map((h) => h.ms))} ms`,
      runnerCpuShareDuringOutage: cpuShare.map((c) => c.toFixed(3)),
      runnerDbErrorsPerSecond: errorRate.map((e) => e.toFixed(1)),
      healthyAfterRestartMs: healthyAfterMs,
      jobStatus: job2.status,
      variations: rows.map((r) => `${r.status}/attempts=${r.attempts}${r.error ? `/${r.error}` : ""}`),
      end,
    });
    // Nothing lost: every variation completed exactly once (one recorded output each, checked above).
    expect(job2.status).toBe("completed");
    expect(rows.map((r) => r.status)).toEqual(rows.map(() => "completed"));
  });
});
