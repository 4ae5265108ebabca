import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { outputKey } from "../../db/keys";
import { makeClip } from "../helpers/clips";
import { dropFirstReply, startDbProxy, type DbProxy } from "../helpers/db-proxy";
import { startRunnerProcess, type RunnerProcess } from "../helpers/runner";
import { expectCleanEndState, FAST_RUNNER, report, startFaultStack, until, variationRows, type FaultStack } from "./support";
import { recordedKeys } from "../helpers/seed";

// Runners here are started by the drill itself (not the launcher) so each can reach the database through its
// own fault-injecting proxy.
let fs: FaultStack;
const started: RunnerProcess[] = [];
const proxies: DbProxy[] = [];
beforeAll(async () => {
  fs = await startFaultStack({ label: "settle", runners: 0 });
});
afterAll(async () => {
  for (const r of started) await r.destroy();
  for (const p of proxies) await p.close();
  await fs?.stop();
});

async function runner(name: string, dbUrl: string, env: Record<string, string> = {}): Promise<RunnerProcess> {
  const r = startRunnerProcess({
    ...FAST_RUNNER,
    ...env,
    LIBSQL_URL: dbUrl,
    LIBSQL_AUTH_TOKEN: fs.stack.libsqlAuthToken,
    EDGE_URL: fs.stack.edgeUrl,
    RUNNER_TOKEN: fs.stack.runnerToken,
    RUNNER_ID: name,
    WORK_DIR: join(fs.dir, "work"),
  });
  started.push(r);
  await r.waitForLog(/runner started/);
  return r;
}

async function proxy(): Promise<DbProxy> {
  const p = await startDbProxy(fs.stack.libsqlUrl);
  proxies.push(p);
  return p;
}

const isCompletion = (body: string) => body.includes("status = 'completed'") && body.includes("output_key");

/** The output as a user gets it: the recorded object, byte for byte the recorded size. */
async function downloadable(jobId: string): Promise<number[]> {
  const view = await fs.user.getJob(jobId);
  const sizes: number[] = [];
  for (const v of view.files.flatMap((f: { variations: { outputId: string | null }[] }) => f.variations)) {
    const res = await fs.user.call(`/api/jobs/${jobId}/outputs/${v.outputId}`);
    expect(res.status).toBe(200);
    sizes.push((await res.arrayBuffer()).byteLength);
  }
  return sizes;
}

describe("fault: settling a finished variation", () => {
  it("keeps the output when the completion committed but its reply was lost", async () => {
    const p = await proxy();
    p.setRule(dropFirstReply(isCompletion));
    const r = await runner("lost-reply", p.url);
    const job = await fs.user.createJob([await makeClip({ seconds: 2 })], 1);
    await until("the job to complete", async () => (await fs.user.getJob(job.id)).status === "completed", 90_000, 200);
    await r.waitForLog(/variation completed/, 10_000);
    const [row] = await variationRows(fs.db, [job.id]);
    expect(p.dropped).toHaveLength(1);
    expect(row).toMatchObject({ status: "completed", attempts: 1, outputKey: outputKey(job.id, row!.id, 1) });
    expect(r.logs()).not.toMatch(/completion rejected/);
    expect(await downloadable(job.id)).toEqual([row!.outputSize]);
    const end = await expectCleanEndState(fs, [job.id]);
    report("completion committed, reply lost", { dropped: p.dropped.length, variation: `${row!.status}/attempts=${row!.attempts}`, key: row!.outputKey, end });
    await r.destroy();
  });

  it("keeps exactly one recorded, downloadable object when the record stalls past the lease while a second runner waits", async () => {
    const p = await proxy();
    // A lease long enough that a stalled event loop on a loaded machine cannot lose it between heartbeats.
    const lease = { LEASE_MS: "6000" };
    const a = await runner("slow-settle", p.url, lease);
    const job = await fs.user.createJob([await makeClip({ seconds: 2 })], 1);
    await a.waitForLog(/claimed variation/, 60_000);
    // The completion request reaches the database only after more than two leases.
    p.setRule((body) => (isCompletion(body) ? { holdMs: 13_000 } : "pass"));
    const b = await runner("waiting", fs.stack.libsqlUrl, lease);
    await until("the completion to be held", async () => p.held.length > 0, 60_000, 50);
    const heldAt = Date.now();
    await until("the job to complete", async () => (await fs.user.getJob(job.id)).status === "completed", 60_000, 200);
    const settleMs = Date.now() - heldAt;

    const [row] = await variationRows(fs.db, [job.id]);
    expect(row).toMatchObject({ status: "completed", attempts: 1, runnerId: "slow-settle" });
    // The lease was renewed through the record: the second runner never got the variation.
    expect(b.logs()).not.toMatch(new RegExp(`claimed variation variation=${row!.id}`));
    expect((await fs.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort()).toEqual(recordedKeys([row!]));
    expect(await downloadable(job.id)).toEqual([row!.outputSize]);
    const end = await expectCleanEndState(fs, [job.id]);
    report("record stalled past the lease, second runner waiting", { settleMs, held: p.held.length, key: row!.outputKey, secondRunnerClaimed: false, end });
  });
});
