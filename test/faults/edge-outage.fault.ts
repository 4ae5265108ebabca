import type { IncomingMessage } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UPLOAD_TRIES } from "../../runner/blobs";
import { makeClip } from "../helpers/clips";
import { startFaultProxy, type FaultProxy } from "./proxy";
import { expectCleanEndState, report, startFaultStack, until, variationRows, type FaultStack } from "./support";
import { recordedKeys } from "../helpers/seed";

let fs: FaultStack;
let proxy: FaultProxy;
beforeAll(async () => {
  // The runner reaches the edge only through the proxy; the database directly (heartbeats keep working).
  proxy = await startFaultProxy();
  fs = await startFaultStack({ label: "edgedown", runners: 1, runnerEnv: { EDGE_URL: proxy.url } });
  proxy.setTarget(fs.stack.edgeUrl);
});
afterAll(async () => {
  await fs?.stop();
  await proxy?.close();
});

const isOutputUpload = (req: IncomingMessage) => req.method === "PUT" && /^\/internal\/objects\/outputs\//.test(req.url ?? "");
const terminal = async (id: string) => ["completed", "failed", "cancelled"].includes((await fs.user.getJob(id)).status);

describe("fault: the edge becomes unreachable while a runner uploads an output", () => {
  it("sends an upload cut mid-body again in place: the variation completes on its first attempt, with one output", async () => {
    let cuts = 0;
    // The first output upload loses its connection after 32 KiB of body: mid-upload, not before it.
    proxy.setRule((req) => (isOutputUpload(req) && cuts++ === 0 ? { cutAfterBytes: 32 * 1024 } : "pass"));
    const job = await fs.user.createJob([await makeClip({ seconds: 4 })], 2);
    await until("the job to finish", () => terminal(job.id), 90_000, 200);

    const rows = await variationRows(fs.db, [job.id]);
    const cut = proxy.events.filter((e) => e.verdict === "cut");
    expect(cut).toHaveLength(1);
    expect(cut[0]!.bytesForwarded).toBe(32 * 1024);
    expect(rows.map((r) => r.status)).toEqual(["completed", "completed"]);
    // The cut PUT was sent again by the same attempt: no requeue, no attempt spent, no encode thrown away.
    expect(rows.map((r) => r.attempts)).toEqual([1, 1]);
    expect((await fs.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort()).toEqual(recordedKeys(rows));
    const end = await expectCleanEndState(fs, [job.id]);
    report("edge unreachable during one output upload", {
      cut: `${cut[0]!.method} ${cut[0]!.path} after ${cut[0]!.bytesForwarded} bytes`,
      runnerSaw: fs.linesOf("runner").filter((l) => /transient|upload failed/.test(l)).map((l) => l.slice(l.indexOf("] ", 12) + 2, 260)),
      variations: rows.map((r) => `${r.status}/attempts=${r.attempts}`),
      end,
    });
    proxy.setRule(() => "pass");
  });

  it("gives up after the attempt cap with a readable reason when every upload is cut, records nothing half-done, and keeps serving", async () => {
    proxy.setRule((req) => (isOutputUpload(req) ? { cutAfterBytes: 16 * 1024 } : "pass"));
    const cutsBefore = proxy.events.filter((e) => e.verdict === "cut").length;
    const doomed = await fs.user.createJob([await makeClip({ seconds: 4 })], 1);
    await until("the job to finish", () => terminal(doomed.id), 90_000, 200);
    const [row] = await variationRows(fs.db, [doomed.id]);
    const view = await fs.user.getJob(doomed.id);
    expect(row).toMatchObject({ status: "failed", attempts: 3, outputKey: null });
    expect(row!.error).toMatch(/^upload failed: .*edge unreachable/);
    expect(view.status).toBe("failed");
    expect(view.files[0].variations[0].error).toBe(row!.error);
    // Each of the 3 attempts sent its upload UPLOAD_TRIES times before giving up.
    expect(proxy.events.filter((e) => e.verdict === "cut").length - cutsBefore).toBe(3 * UPLOAD_TRIES);

    // The edge is back: the same runner takes new work as usual.
    proxy.setRule(() => "pass");
    const next = await fs.user.createJob([await makeClip({ seconds: 4 })], 1);
    await until("the next job to finish", () => terminal(next.id), 90_000, 200);
    expect((await fs.user.getJob(next.id)).status).toBe("completed");
    const end = await expectCleanEndState(fs, [doomed.id, next.id]);
    report("edge unreachable for every upload of a variation", {
      variation: `${row!.status}/attempts=${row!.attempts}`,
      reason: row!.error,
      jobError: view.error,
      nextJob: "completed",
      end,
    });
  });
});
