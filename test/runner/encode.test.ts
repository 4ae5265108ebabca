import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { crc32 } from "node:zlib";
import { eq } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import { outputKey } from "../../db/keys";
import { variations } from "../../db/schema";
import { BlobClient } from "../../runner/blobs";
import { encode, type Encoding } from "../../runner/encode";
import { createLogger } from "../../runner/log";
import { RunnerMetrics } from "../../runner/metrics";
import { ProcessRegistry } from "../../runner/processes";
import { makeClip, makeNotAVideo, probeFile } from "../helpers/clips";
import { dropFirstReply, startDbProxy } from "../helpers/db-proxy";
import { filesUnder, startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { until } from "../helpers/until";
import { startInProcessRunner, startRunnerProcess, type InProcessRunner, type RunnerProcess } from "../helpers/runner";
import { getJobRow, getVariationRows, seedJob } from "../helpers/seed";
import { tempDirs } from "../helpers/tmp";

let stack: EdgeStack;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  stack = await startEdgeStack("runner_encode");
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

async function inProcessRunner(env: Record<string, string>): Promise<InProcessRunner> {
  const r = await startInProcessRunner({ env: stack.runnerEnv(env) });
  cleanup.push(() => r.stop());
  return r;
}

/**
 * Makes the test a runner holding `variationId` (attempt `attempt`, lease 60 s) so it may write that attempt's
 * output through the edge; returns the ticket.
 */
async function holdAs(variationId: string, runnerId: string, attempt: number) {
  await stack.db
    .update(variations)
    .set({ status: "running", runnerId, attempts: attempt, claims: attempt, leaseExpiresAt: Date.now() + 60_000 })
    .where(eq(variations.id, variationId));
  return { runnerId, variationId, attempt };
}

const isCompletion = (body: string) => body.includes("status = 'completed'") && body.includes("output_key");
const terminal = (s: string | undefined) => s === "completed" || s === "failed" || s === "cancelled";

describe("runner: claim → encode → complete", { timeout: 180_000 }, () => {
  it("completes a job created through the edge: valid MP4 outputs, recorded params, rising progress, thumbnail, metrics", async () => {
    const clip = await makeClip({ seconds: 30 });
    const job = await stack.user.createJob([clip], 2);
    const workDir = await stack.workDir();
    const runner = runnerProcess({ CONCURRENCY: "2", WORK_DIR: workDir, METRICS_PORT: "0" });

    // Sample progress from the database while the encodes run: it must rise, not jump from 0 to 100.
    const seen = new Map<string, number[]>();
    await until("the job to finish", async () => {
      for (const v of await getVariationRows(stack.db, job.id)) {
        const list = seen.get(v.id) ?? [];
        if (v.status === "running" && v.progress > 0 && list.at(-1) !== v.progress) list.push(v.progress);
        seen.set(v.id, list);
      }
      return terminal((await getJobRow(stack.db, job.id))?.status);
    }, 90_000, 50);

    const api = await stack.user.getJob(job.id);
    expect(api).toMatchObject({ status: "completed", completedVariations: 2, failedVariations: 0, progress: 100 });
    expect(api.thumbnailUrl).toBe(`/api/jobs/${job.id}/thumbnail`);
    const thumb = await stack.user.call(api.thumbnailUrl);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get("content-type")).toBe("image/jpeg");

    // Downloads are checked in a directory of the test's own: the runner's WORK_DIR is the runner's to sweep.
    const checkDir = await stack.workDir();
    const rows = await getVariationRows(stack.db, job.id);
    for (const v of api.files[0].variations) {
      expect(v.params).toMatchObject({ recipe: 2, zoom: expect.any(Number), brightness: expect.any(Number), width: 320, height: 240 });
      const res = await stack.user.call(`/api/jobs/${job.id}/outputs/${v.outputId}`);
      expect(res.status).toBe(200);
      const file = join(checkDir, `check-${v.index}.mp4`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect(bytes.length).toBe(v.outputSize);
      // The digest recorded with the completion is the one of the bytes served: the ZIP's headers come from it.
      const row = rows.find((r) => r.id === v.outputId);
      expect(row).toMatchObject({ outputSha256: createHash("sha256").update(bytes).digest("hex"), outputCrc32: crc32(bytes) });
      await writeFile(file, bytes);
      const out = await probeFile(file);
      expect(out.streams.map((s) => s.codec_name).sort()).toEqual(["aac", "h264"]);
      expect(out.streams.find((s) => s.codec_type === "video")).toMatchObject({ pix_fmt: "yuv420p", r_frame_rate: "30000/1001" });
      expect(Math.abs(out.durationMs - 30_000)).toBeLessThan(600);
      expect(out.faststart).toBe(true);
    }
    // The ZIP, laid out from those recorded digests without the edge reading the outputs first, passes unzip's check.
    const zipFile = join(checkDir, "job.zip");
    await writeFile(zipFile, new Uint8Array(await (await stack.user.call(`/api/jobs/${job.id}/download`)).arrayBuffer()));
    expect((await promisify(execFile)("unzip", ["-t", zipFile])).stdout).toContain("No errors detected");
    const rising = [...seen.values()].filter((list) => list.length >= 2 && list.every((p, i) => i === 0 || p > list[i - 1]!));
    expect(rising.length, JSON.stringify([...seen.values()])).toBeGreaterThan(0);

    const port = Number(/metrics listening port=(\d+)/.exec(await runner.waitForLog(/metrics listening/))![1]);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('runner_variations_finished_total{status="completed"} 2');
    expect(metrics).toMatch(/runner_db_round_trips_total \d+/);
    expect(metrics).toContain("runner_ffmpeg_processes 0");
    // Local files are gone once the job is finished.
    await until("the work dir to be swept", async () => (await filesUnder(workDir)).length === 0, 10_000);
  });

  it("fails every variation of a source that is not decodable video at once, with a clear reason and no retries", async () => {
    const job = await stack.user.createJob([await makeNotAVideo()], 3);
    runnerProcess({ CONCURRENCY: "1", WORK_DIR: await stack.workDir() });
    await until("the job to fail", async () => terminal((await getJobRow(stack.db, job.id))?.status), 30_000);
    const api = await stack.user.getJob(job.id);
    expect(api.status).toBe("failed");
    expect(api.error).toMatch(/^All 3 variations failed: not a decodable video/);
    expect(api.files[0].error).toMatch(/^not a decodable video/);
    const rows = await getVariationRows(stack.db, job.id);
    expect(rows.map((r) => r.status)).toEqual(["failed", "failed", "failed"]);
    // Failed at the first look: nothing was claimed a second time.
    expect(Math.max(...rows.map((r) => r.claims))).toBe(1);
    expect(rows.filter((r) => r.claims === 1)).toHaveLength(1);
  });

  it("fails a source whose object is gone from storage, with a clear reason", async () => {
    const job = await seedJob(stack.db, { sources: [{ objectKey: `sources/gone/${newId()}` }], variationsPerSource: 2 });
    runnerProcess({ WORK_DIR: await stack.workDir() });
    await until("the job to fail", async () => terminal((await getJobRow(stack.db, job.jobId))?.status), 30_000);
    const rows = await getVariationRows(stack.db, job.jobId);
    expect(rows.map((r) => [r.status, r.error])).toEqual([
      ["failed", "source file is missing from storage"],
      ["failed", "source file is missing from storage"],
    ]);
  });

  it("does not fail anybody's video when a runner's EDGE_URL points at a path the edge does not serve (404 for the route)", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const edgeUrl = stack.runnerEnv().EDGE_URL!;
    const wrong = runnerProcess({ EDGE_URL: `${edgeUrl}/api/`, WORK_DIR: await stack.workDir() });
    await wrong.waitForLog(/edge unavailable: variation handed back/);
    await wrong.destroy();
    expect((await getJobRow(stack.db, job.id))?.status).not.toBe("failed");
    expect((await getVariationRows(stack.db, job.id))[0]!.status).not.toBe("failed");
    // A runner set up right does the work.
    runnerProcess({ WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000, 100);
  });

  it("fails a source over the runner's duration or resolution limit before any encode, with a reason naming the limit", async () => {
    const long = await stack.user.createJob([await makeClip({ seconds: 3 })], 2);
    runnerProcess({ CONCURRENCY: "1", WORK_DIR: await stack.workDir(), MAX_SOURCE_SECONDS: "2", MAX_SOURCE_DIMENSION: "200" });
    // Generous: the wait covers the runner's start (tsx) on a machine the other test files keep busy.
    await until("the job to fail", async () => terminal((await getJobRow(stack.db, long.id))?.status), 90_000);
    const api = await stack.user.getJob(long.id);
    expect(api.status).toBe("failed");
    expect(api.files[0].error).toBe("source is too long: 3 s; the limit is 2 s");
    const rows = await getVariationRows(stack.db, long.id);
    expect(rows.map((r) => [r.status, r.params])).toEqual([["failed", null], ["failed", null]]);

    const big = await stack.user.createJob([await makeClip({ seconds: 1 })], 1);
    await until("the job to fail", async () => terminal((await getJobRow(stack.db, big.id))?.status), 90_000);
    expect((await stack.user.getJob(big.id)).files[0].error).toBe("source resolution 320×240 is too large; the limit is 200 px on either side");
  });

  it("sweeps a stored output the database does not record once the job is finished, keeping the recorded ones", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 2);
    // What a runner that lost its lease mid-upload leaves behind: attempt 1's output, uploaded while it still held
    // the lease, then the variation went back to the queue (attempt 2 records its own key).
    const [v] = await getVariationRows(stack.db, job.id);
    const stray = join(await stack.workDir(), "stray.mp4"); // a directory no runner uses
    await writeFile(stray, "not recorded anywhere");
    const strayKey = outputKey(job.id, v!.id, 1);
    await stack.blobs.upload(strayKey, stray, undefined, await holdAs(v!.id, "ghost", 1));
    await stack.db.update(variations).set({ status: "queued", runnerId: null, leaseExpiresAt: null }).where(eq(variations.id, v!.id));

    runnerProcess({ WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000);
    // Each completed variation records its output and its thumbnail (both under outputs/<job>/).
    const recorded = (await getVariationRows(stack.db, job.id)).flatMap((v) => [v.outputKey, v.thumbnailKey]).sort();
    expect(recorded).toHaveLength(4);
    const keys = await until("the orphan to be deleted", async () => {
      const list = (await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort();
      return list.length === 4 ? list : null;
    }, 10_000);
    expect(keys).toEqual(recorded);
  });

  it("rejects the completion of an attempt that lost its lease and deletes only that attempt's object", async () => {
    // The completion is held at a database proxy until the test has handed the variation to attempt 2: the lease
    // is lost between the upload and the record, whatever the runner's ticks do meanwhile (a task recording its
    // result is never stopped by a heartbeat).
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const proxy = await startDbProxy(stack.libsqlUrl, (body) => (isCompletion(body) ? { hold: gate } : "pass"));
    cleanup.push(async () => {
      release();
      await proxy.close();
    });
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    const r = await inProcessRunner({ LIBSQL_URL: proxy.url, LEASE_MS: "60000", WORK_DIR: await stack.workDir() });
    await until("the completion to reach the database proxy", async () => proxy.held.length > 0, 60_000, 20);
    const [v] = await getVariationRows(stack.db, job.id);
    // Attempt 2 (another runner) took it over and already stored its own output under its own key.
    const newer = outputKey(job.id, v!.id, 2);
    const file = join(await stack.workDir(), "newer.mp4");
    await writeFile(file, "attempt 2's output");
    await stack.blobs.upload(newer, file, undefined, await holdAs(v!.id, "thief", 2));
    release();

    await r.waitForLog(/completion rejected: lease lost/, 30_000);
    // The outcome is counted when the task has finished its clean-up (the delete), so wait for the count itself.
    await until("the task to end as lost", async () => r.metrics.finished.get({ status: "lost" }) === 1, 10_000);
    const [after] = await getVariationRows(stack.db, job.id);
    expect(after).toMatchObject({ status: "running", runnerId: "thief", outputKey: null });
    // The edge lists a job's outputs once the job is over.
    await stack.settleLeftovers();
    expect((await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key)).toEqual([newer]);
    await stack.blobs.delete(newer);
  });

  it("keeps a completed output whose database reply was lost: recorded, listed once and downloadable", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    // The completion's batch commits, then the connection is reset before the reply: the runner retries it.
    const proxy = await startDbProxy(stack.libsqlUrl, dropFirstReply(isCompletion));
    cleanup.push(() => proxy.close());
    const r = await inProcessRunner({ LIBSQL_URL: proxy.url, WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000);
    await until("the task to end", async () => r.runner.active === 0, 10_000);
    expect(proxy.dropped).toHaveLength(1);
    expect(r.lines.join("\n")).not.toMatch(/completion rejected/);
    const [row] = await getVariationRows(stack.db, job.id);
    expect(row).toMatchObject({ status: "completed", attempts: 1, outputKey: outputKey(job.id, row!.id, 1) });
    expect((await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort()).toEqual([row!.outputKey, row!.thumbnailKey].sort());
    const api = await stack.user.getJob(job.id);
    const res = await stack.user.call(`/api/jobs/${job.id}/outputs/${api.files[0].variations[0].outputId}`);
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(row!.outputSize);
  });

  it("refuses, at the edge, to delete an object the database records", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 2 })], 1);
    await inProcessRunner({ WORK_DIR: await stack.workDir() });
    await until("the job to complete", async () => (await getJobRow(stack.db, job.id))?.status === "completed", 60_000);
    const [row] = await getVariationRows(stack.db, job.id);
    await expect(stack.blobs.delete(row!.outputKey!)).rejects.toThrow(/409/);
    await expect(stack.blobs.delete(row!.thumbnailKey!)).rejects.toThrow(/409/);
    expect((await stack.blobs.list(`outputs/${job.id}/`)).map((o) => o.key).sort()).toEqual([row!.outputKey, row!.thumbnailKey].sort());
  });

  it("stops encoding a variation another runner took over, without recording anything", async () => {
    const job = await stack.user.createJob([await makeClip({ seconds: 180 })], 1);
    const workDir = await stack.workDir();
    const r = await inProcessRunner({ WORK_DIR: workDir });
    await r.waitForLog(/ffmpeg started/);
    const [v] = await getVariationRows(stack.db, job.id);
    await stack.db.update(variations).set({ runnerId: "thief", attempts: 2, claims: 2 }).where(eq(variations.id, v!.id));

    await r.waitForLog(/variation lost to another runner; dropped/, 10_000);
    expect(r.lines.join("\n")).toMatch(/stop stage q .*reason=lost/);
    const [after] = await getVariationRows(stack.db, job.id);
    expect(after).toMatchObject({ status: "running", runnerId: "thief", stopStage: null });
    expect((await filesUnder(workDir)).filter((f) => f.endsWith(".mp4"))).toEqual([]);
    await stack.settleLeftovers();
    expect(await stack.blobs.list(`outputs/${job.id}/`)).toEqual([]);
  });

  it("moves a large output up in R2 multipart parts through the edge, byte for byte", async () => {
    const dir = await stack.workDir();
    const file = join(dir, "big.mp4");
    const data = randomBytes(11 * 1024 * 1024 + 12345);
    await writeFile(file, data);
    // Thresholds scaled down so an 11 MB file takes the path a > 90 MB output takes in production.
    const blobs = new BlobClient({ edgeUrl: stack.edge.url, token: stack.runnerToken, singlePutMaxBytes: 1024 * 1024, partBytes: 5 * 1024 * 1024 });
    const job = await stack.user.createJob([await makeClip({ seconds: 1 })], 1);
    const [v] = await getVariationRows(stack.db, job.id);
    const ticket = await holdAs(v!.id, `multipart-${newId()}`, 1);
    const key = outputKey(job.id, v!.id, 1);
    const urls: string[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = (input, init) => {
      urls.push(`${init?.method ?? "GET"} ${String(input).replace(stack.edge.url, "")}`);
      return realFetch(input, init);
    };
    try {
      expect(await blobs.upload(key, file, undefined, ticket)).toEqual({ size: data.length });
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(urls.map((u) => u.replace(/uploads\/[^/?]+/, "uploads/ID").replace(/\?.*/, ""))).toEqual([
      "POST /internal/uploads",
      "PUT /internal/uploads/ID/parts/1",
      "PUT /internal/uploads/ID/parts/2",
      "PUT /internal/uploads/ID/parts/3",
      "POST /internal/uploads/ID/complete",
    ]);
    // Runners never read outputs back: record it and fetch it as its user does.
    await stack.db
      .update(variations)
      .set({ status: "completed", outputKey: key, outputSize: data.length, leaseExpiresAt: null })
      .where(eq(variations.id, v!.id));
    const res = await stack.user.call(`/api/jobs/${job.id}/outputs/${v!.id}`);
    expect(res.status).toBe(200);
    expect(Buffer.compare(Buffer.from(await res.arrayBuffer()), data)).toBe(0);
  });
});

describe("an encode stopped for a shutdown", () => {
  const dirs = tempDirs("vr-encode-stop");
  afterAll(() => dirs.cleanup());

  it.each([
    { case: "alone", before: null },
    { case: "after a cancel that found FFmpeg finished", before: "cancel" as const },
    { case: "after the stall watchdog found FFmpeg finished", before: "stall" as const },
  ])("hands the variation back as soon as FFmpeg's uid is released when a shutdown came during that release ($case), instead of verifying and measuring past the shutdown", async ({ before }) => {
    const job = await seedJob(stack.db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1 });
    const variationId = job.variationIds[0]!;
    const own = await holdAs(variationId, "runner-shutdown-release", 1);
    const workDir = await dirs.make();
    const file = join(workDir, "out.mp4");
    const log = createLogger({ sink: () => {} });
    type Mutable = Encoding & { stopReason: Encoding["stopReason"]; mustLeave: boolean; leaveReason: Encoding["leaveReason"] };
    const task: Mutable = {
      id: variationId,
      jobId: job.jobId,
      attempt: 1,
      own,
      claim: { sourceId: job.sourceIds[0]! },
      key: `${variationId}.a1`,
      progress: 0,
      lastProgressAt: 0,
      phase: "prepare",
      stopReason: null,
      hadLocalTrouble: false,
      redrawSlot: false,
      redrawPlace: null,
      stopAsked: false,
      mustLeave: false,
      leaveReason: null,
      signal: new AbortController().signal,
    };
    // The stops land after FFmpeg exited on its own and before the encode looks at how it ended (while its uid is
    // released): VariationTask.stop finds no process to stop, so all they leave is their reasons. The first stop
    // keeps its place as the stop reason; a shutdown after it is only recorded as the reason to leave.
    class StopsDuringRelease extends ProcessRegistry {
      override stopStage(key: string) {
        task.stopReason = before ?? "shutdown";
        task.mustLeave = true;
        task.leaveReason = "shutdown";
        return super.stopStage(key);
      }
    }
    const processes = new StopsDuringRelease({ graceMs: 2000, log, metrics: new RunnerMetrics() });
    const args = ["-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=0.5", "-c:v", "mpeg4", file];
    const outcome = await encode(
      { config: { WORK_DIR: workDir, STALL_MS: 60_000, FFMPEG_PATH: "ffmpeg" }, db: stack.db, log, processes },
      task,
      { args, expectedDurationMs: 500, geometry: { width: 64, height: 64, cropW: 64, cropH: 64, cropX: 0, cropY: 0 }, writes: [file] },
      file,
      {},
    );
    expect(outcome).toBe("released");
    expect((await getVariationRows(stack.db, job.jobId))[0]).toMatchObject({ status: "queued" });
  });
});
