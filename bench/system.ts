// Whole-system benchmarks on the real local stack (scripts/stack.ts: libSQL server, wrangler dev, runners,
// Debian FFmpeg). Each function measures one thing and returns figures; bench/index.ts prints the table.
// Nothing here asserts: these are measurements, run them on a quiet machine.
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { sql } from "drizzle-orm";
import { createDb, type Db } from "../db/client";
import { newId } from "../db/ids";
import { outputKey } from "../db/keys";
import { ticketHeaders } from "../db/tickets";
import { migrateDb } from "../db/migrate";
import { claimVariation, finishVariation } from "../db/queries/variations";
import type { Stack } from "../scripts/stack";
import { startTestStack } from "../test/helpers/test-stack";
import { signInToEdge, type ApiSession } from "../test/helpers/api";
import { makeClip } from "../test/helpers/clips";
import { isAlive } from "../test/helpers/runner";
import { seedJob } from "../test/helpers/seed";
import { ffmpegPidsUnder } from "../test/faults/inspect";
import { until } from "../test/helpers/until";

const MiB = 1024 * 1024;
/** A 1 GiB upload or ZIP download: bounded (a hung edge must not hold the bench forever), but far above a slow machine's time. */
const BIG_TRANSFER_MS = 20 * 60_000;
export const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface BenchStack {
  stack: Stack;
  dir: string;
  db: Db;
  user: ApiSession;
  metricsPort: number;
  metrics(i?: number): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** The launcher `npm start` uses (through the tests' startTestStack), with product defaults unless overridden. */
export async function startBenchStack(label: string, runners: number, runnerEnv: Record<string, string> = {}): Promise<BenchStack> {
  const tail: string[] = [];
  const started = await startTestStack({
    prefix: `vr-bench-${label}-`,
    runners,
    runnerEnv,
    namedDatabases: true,
    // The bench plays many jobs from one user; per-user limits are not what it measures.
    edgeVars: { USER_ACTIVE_JOBS: "1000", USER_QUEUED_VARIATIONS: "100000" },
    log: (line) => {
      tail.push(line);
      if (tail.length > 200) tail.shift();
      if (process.env.BENCH_VERBOSE) log(line);
    },
    logTail: () => tail.join("\n"),
  });
  const { stack, dir, metricsPort } = started;
  const db = createDb(stack.libsqlUrl, { authToken: stack.libsqlAuthToken });
  const user = await signInToEdge(stack.edgeUrl, db).catch(async (err: unknown) => {
    db.$client.close();
    await started.stop();
    throw err;
  });
  return {
    stack,
    dir,
    db,
    user,
    metricsPort,
    async metrics(i = 0) {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort + i}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const l of text.split("\n")) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(l);
        if (m) out[m[1]!] = Number(m[2]);
      }
      return out;
    },
    async stop() {
      db.$client.close();
      await started.stop();
    },
  };
}

const isTerminal = (s: string) => s === "completed" || s === "failed" || s === "cancelled";

export interface StopLatency {
  trials: number;
  stopMs: number[];
  apiMs: number[];
  stages: Record<string, number>;
}

/**
 * Cancel a running 2-variation job through the edge (POST /api/jobs/:id/cancel) at a random point of the watch
 * period; measure until the last FFmpeg of the job has exited (/proc) and until GET /api/jobs/:id reads terminal.
 * Product defaults: WATCH_MS 1000, STOP_GRACE_MS 2000, one runner with CONCURRENCY 2.
 */
export async function benchStopLatency(b: BenchStack, trials: number): Promise<StopLatency> {
  const clip = await makeClip({ seconds: 60 });
  const out: StopLatency = { trials, stopMs: [], apiMs: [], stages: {} };
  for (let i = 0; i < trials; i++) {
    const before = new Set(await ffmpegPidsUnder([b.dir], { encodesOnly: true }));
    const job = await b.user.createJob([clip], 2);
    const pids = await until("both encodes", async () => {
      const fresh = (await ffmpegPidsUnder([b.dir], { encodesOnly: true })).filter((p) => !before.has(p));
      return fresh.length === 2 && fresh;
    }, 60_000, 20);
    await sleep(300 + Math.random() * 1000);
    const t0 = performance.now();
    const cancel = b.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" }).then((r) => r.arrayBuffer());
    // Only the two known pids are checked (kill 0 + zombie check): a full /proc scan would blur the figure.
    const stopped = (async () => {
      while ((await Promise.all(pids.map(isAlive))).some(Boolean)) await sleep(2);
      return performance.now() - t0;
    })();
    const terminal = (async () => {
      while (!isTerminal((await b.user.getJob(job.id)).status)) await sleep(25);
      return performance.now() - t0;
    })();
    out.stopMs.push(await stopped);
    out.apiMs.push(await terminal);
    await cancel;
    const stages = await b.db.all<{ s: string | null }>(sql`SELECT stop_stage AS s FROM variations WHERE job_id = ${job.id}`);
    for (const { s } of stages) out.stages[s ?? "none"] = (out.stages[s ?? "none"] ?? 0) + 1;
    log(`  stop trial ${i + 1}/${trials}: FFmpeg gone ${Math.round(out.stopMs.at(-1)!)} ms, API terminal ${Math.round(out.apiMs.at(-1)!)} ms`);
  }
  return out;
}

export interface BusyFigures {
  idleRoundTripsPerPoll: number;
  idleRoundTripsPerSecond: number;
  busyRoundTripsPerSecond: number;
  queuedCancelMs: number[];
}

/**
 * Database round trips of a real runner (its own /metrics counters): idle for 10 s, then busy with both slots
 * encoding for 8 s. While it is busy, queued jobs pile up behind it: cancel 20 of them and time each request.
 */
export async function benchRunnerLoad(b: BenchStack, queuedTrials: number): Promise<BusyFigures> {
  await sleep(2000);
  const a = await b.metrics();
  const idleMs = 10_000;
  await sleep(idleMs);
  const c = await b.metrics();
  const idleTrips = c.runner_db_round_trips_total! - a.runner_db_round_trips_total!;
  const idleTicks = (c.runner_ticks_total ?? NaN) - (a.runner_ticks_total ?? NaN);

  // Two long 1080×1920 encodes hold both slots for the whole measurement (checked before and after).
  const blocker = await b.user.createJob([await makeClip({ seconds: 120, width: 1080, height: 1920 })], 2);
  const encoding = async () => (await ffmpegPidsUnder([b.dir], { encodesOnly: true })).length === 2;
  await until("both slots encoding", encoding, 120_000, 50);
  await sleep(1500);
  const d = await b.metrics();
  const t0 = performance.now();
  await sleep(8000);
  const e = await b.metrics();
  const busyS = (performance.now() - t0) / 1000;
  const busyTrips = e.runner_db_round_trips_total! - d.runner_db_round_trips_total!;
  if (!(await encoding())) throw new Error("an encode finished inside the busy window: the busy figure would be wrong");

  const clip = await makeClip({ seconds: 2 });
  const queuedCancelMs: number[] = [];
  for (let i = 0; i < queuedTrials; i++) {
    if (!(await encoding())) throw new Error("the blocker stopped encoding: later jobs would not stay queued");
    const job = await b.user.createJob([clip], 1);
    const t = performance.now();
    const res = await b.user.call(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    const body = (await res.json()) as { status: string; previousStatus: string };
    queuedCancelMs.push(performance.now() - t);
    if (res.status !== 200 || body.status !== "cancelled" || body.previousStatus !== "queued") {
      throw new Error(`queued cancel answered ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
    }
  }
  await b.user.call(`/api/jobs/${blocker.id}/cancel`, { method: "POST" }).then((r) => r.arrayBuffer());
  await until("the blocker to stop", async () => (await ffmpegPidsUnder([b.dir], { encodesOnly: true })).length === 0, 30_000, 50);
  return {
    idleRoundTripsPerPoll: idleTrips / idleTicks,
    idleRoundTripsPerSecond: idleTrips / (idleMs / 1000),
    busyRoundTripsPerSecond: busyTrips / busyS,
    queuedCancelMs,
  };
}

export interface ClaimFigures {
  variations: number;
  loops: number;
  users: number;
  historyJobs: number;
  seconds: number;
  claimsPerSecond: number;
  doubleClaims: number;
  unclaimed: number;
}

export interface ClaimBenchShape {
  loops?: number;
  /** Owners the queued jobs are spread over (the claim takes turns between users). */
  users?: number;
  jobsPerUser?: number;
  variationsPerJob?: number;
  /** Finished jobs (20 completed variations each) already in the database: the claim must not slow down with them. */
  historyJobs?: number;
}

/**
 * Concurrent claim loops (each its own client and runner id, as that many runners would be) over no-op variations
 * in a database of their own on the stack's libSQL server: claim → finish at once, until the queue is empty.
 * Double claims: a variation handed out more than once (by the loops' own tally and by `claims`, which every claim increments).
 */
export async function benchClaims(b: BenchStack, shape: ClaimBenchShape = {}): Promise<ClaimFigures> {
  const { loops = 16, users = 1, jobsPerUser = 20, variationsPerJob = 100, historyJobs = 0 } = shape;
  const url = `${b.stack.libsqlUrl}/claims${newId()}/`;
  await migrateDb(url, b.stack.libsqlAuthToken);
  const db = createDb(url, { authToken: b.stack.libsqlAuthToken });
  const owners: string[] = [];
  for (let u = 0; u < users; u++) {
    for (let j = 0; j < jobsPerUser; j++) {
      const job = await seedJob(db, {
        sources: [{ objectKey: `sources/bench/${u}-${j}` }],
        variationsPerSource: variationsPerJob,
        thumbnailKey: "none",
        userId: owners[u],
      });
      owners[u] = job.userId;
    }
  }
  for (let h = 0; h < historyJobs; h++) {
    const job = await seedJob(db, { sources: [{ objectKey: `sources/bench/h${h}` }], variationsPerSource: 20, status: "completed", userId: owners[h % users] });
    await db.run(sql`UPDATE variations SET status = 'completed', progress = 100 WHERE job_id = ${job.jobId}`);
  }
  const total = users * jobsPerUser * variationsPerJob;
  const seen = new Map<string, number>();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: loops }, async (_, i) => {
      const mine = createDb(url, { authToken: b.stack.libsqlAuthToken });
      const runnerId = `claim-loop-${i}`;
      for (;;) {
        const v = await claimVariation(mine, { runnerId, leaseMs: 60_000, now: Date.now() });
        if (!v) break;
        seen.set(v.id, (seen.get(v.id) ?? 0) + 1);
        await finishVariation(mine, { variationId: v.id, runnerId, attempt: v.attempt, outputKey: outputKey(v.jobId, v.id, v.attempt), outputSize: 1, now: Date.now() });
      }
      mine.$client.close();
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const [row] = await db.all<{ twice: number; left: number }>(sql`
    SELECT sum(CASE WHEN claims > 1 THEN 1 ELSE 0 END) AS twice, sum(CASE WHEN status <> 'completed' THEN 1 ELSE 0 END) AS left
    FROM variations`);
  db.$client.close();
  const byTally = [...seen.values()].filter((n) => n > 1).length;
  return {
    variations: total,
    loops,
    users,
    historyJobs,
    seconds,
    claimsPerSecond: seen.size / seconds,
    doubleClaims: Math.max(byTally, Number(row!.twice)),
    unclaimed: Number(row!.left),
  };
}

/** Resident memory of every workerd process of the edge's process group, in MiB. */
async function workerdRssMiB(b: BenchStack): Promise<number> {
  const pgid = b.stack.pids.edge!;
  let kib = 0;
  const { readdir } = await import("node:fs/promises");
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) !== pgid) continue; // field 5 of stat: process group
      if (!/^workerd/.test((await readFile(`/proc/${name}/comm`, "utf8")).trim())) continue;
      kib += Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${name}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      // exited
    }
  }
  return kib / 1024;
}

/** Samples workerd RSS every 100 ms while `work` runs. */
async function sampled<T>(b: BenchStack, work: () => Promise<T>): Promise<{ result: T; baselineMiB: number; peakMiB: number }> {
  const baselineMiB = await workerdRssMiB(b);
  let peakMiB = baselineMiB;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      peakMiB = Math.max(peakMiB, await workerdRssMiB(b));
      await sleep(100);
    }
  })();
  try {
    const result = await work();
    return { result, baselineMiB, peakMiB };
  } finally {
    done = true;
    await sampler;
  }
}

/** `size` bytes that sniff as MP4, streamed from one repeated 1 MiB block (nothing this big is ever in memory). */
function mp4ish(size: number): AsyncGenerator<Buffer> {
  const first = Buffer.alloc(MiB, 7);
  first.set([0, 0, 0, 0x18, ...Buffer.from("ftypisom"), 0, 0, 2, 0, ...Buffer.from("isomiso2")], 0);
  const rest = Buffer.alloc(MiB, 7);
  return (async function* () {
    for (let sent = 0; sent < size; sent += MiB) yield (sent === 0 ? first : rest).subarray(0, Math.min(MiB, size - sent));
  })();
}

export interface MemoryFigures {
  upload: { bytes: number; seconds: number; baselineMiB: number; peakMiB: number; status: number; retriedAfterReload: boolean };
  zip: { bytes: number; seconds: number; baselineMiB: number; peakMiB: number; status: number };
  /** Output PUTs (seeding the ZIP) that had to be sent again. */
  putRetries: number;
}

/**
 * workerd memory (RSS of the `wrangler dev` workerd processes, local miniflare) while (1) a 1 GiB video is
 * streamed through POST /api/jobs as multipart/form-data and (2) a 1 GiB ZIP (16 outputs of 64 MiB) is
 * streamed out of GET /api/jobs/:id/download. Run with no runner, so nothing else moves bytes meanwhile.
 */
export async function benchWorkerdMemory(b: BenchStack): Promise<MemoryFigures> {
  const GiB = 1024 * MiB;
  const boundary = "----vrbench";
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="variations"\r\n\r\n1\r\n--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="one-gib.mp4"\r\nContent-Type: video/mp4\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const body = async function* () {
    yield head;
    yield* mp4ish(GiB);
    yield tail;
  };
  const upload = () =>
    sampled(b, async () => {
      const t0 = performance.now();
      const res = await b.user.call("/api/jobs", {
        method: "POST",
        body: Readable.toWeb(Readable.from(body())) as unknown as BodyInit,
        headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(head.length + GiB + tail.length) },
        duplex: "half",
        // 1 GiB each way: the session's 60 s default would cut a slow machine's measurement short.
        signal: AbortSignal.timeout(BIG_TRANSFER_MS),
      } as RequestInit);
      const text = await res.text();
      const seconds = (performance.now() - t0) / 1000;
      if (res.status !== 202) log(`  1 GiB upload answered ${res.status}: ${text.slice(0, 300)}`);
      return { status: res.status, seconds, text, jobId: res.status === 202 ? (JSON.parse(text) as { id: string }).id : "" };
    });
  let up = await upload();
  // wrangler dev rebuilds and restarts the worker when a file under edge/ changes (someone editing the repo while
  // this runs): that 503 says nothing about the upload path, so measure once more.
  const reloaded = up.result.status === 503 && /restarted mid-request/.test(up.result.text);
  if (reloaded) up = await upload();
  if (up.result.status === 202) await b.user.call(`/api/jobs/${up.result.jobId}/cancel`, { method: "POST" }).then((r) => r.arrayBuffer());
  log(`  1 GiB upload: ${up.result.status} in ${up.result.seconds.toFixed(1)} s, workerd RSS ${up.baselineMiB.toFixed(0)} → peak ${up.peakMiB.toFixed(0)} MiB`);

  // A completed job whose 16 outputs of 64 MiB are put through the runner endpoint as runners upload them: each
  // variation held by a runner (running, attempt 1, a live lease), its attempt's key, the ticket headers, the
  // SHA-256 for R2 to check; then recorded completed with its digest, as finishVariation records it.
  const seeded = await seedJob(b.db, { sources: [{ objectKey: "sources/bench/none" }], variationsPerSource: 16, userId: b.user.userId, thumbnailKey: "none" });
  const runnerId = "bench-seeder";
  await b.db.run(sql`UPDATE jobs SET status = 'processing' WHERE id = ${seeded.jobId}`);
  await b.db.run(sql`UPDATE variations SET status = 'running', runner_id = ${runnerId}, claims = 1, attempts = 1,
    started_at = ${Date.now()}, lease_expires_at = ${Date.now() + 30 * 60_000} WHERE job_id = ${seeded.jobId}`);
  const part = 64 * MiB;
  const digest = { sha256: createHash("sha256"), crc: 0 };
  for await (const chunk of mp4ish(part)) {
    digest.sha256.update(chunk);
    digest.crc = crc32(chunk, digest.crc);
  }
  const sha256 = digest.sha256.digest("hex");
  let retries = 0;
  for (const id of seeded.variationIds) {
    const key = outputKey(seeded.jobId, id, 1);
    // One retry, as a runner would: a PUT through wrangler dev once stalled without an answer in these runs.
    for (let attempt = 1; ; attempt++) {
      const res = await fetch(`${b.stack.edgeUrl}/internal/objects/${key}`, {
        method: "PUT",
        body: Readable.toWeb(Readable.from(mp4ish(part))) as unknown as BodyInit,
        headers: {
          authorization: `Bearer ${b.stack.runnerToken}`,
          "content-length": String(part),
          ...ticketHeaders({ runnerId, variationId: id, attempt: 1 }),
          "x-content-sha256": sha256,
        },
        duplex: "half",
        signal: AbortSignal.timeout(60_000),
      } as RequestInit).catch((err: unknown) => err as Error);
      if (res instanceof Response && res.ok) break;
      const why = res instanceof Response ? `${res.status} ${await res.text()}` : String(res);
      if (attempt >= 2) throw new Error(`output PUT failed twice: ${why}`);
      retries++;
      log(`  output PUT ${key} failed (${why}); retrying`);
    }
    await b.db.run(sql`UPDATE variations SET status = 'completed', progress = 100, output_key = ${key}, output_size = ${part},
      output_sha256 = ${sha256}, output_crc32 = ${digest.crc >>> 0}, lease_expires_at = NULL, finished_at = ${Date.now()} WHERE id = ${id}`);
  }
  await b.db.run(sql`UPDATE jobs SET status = 'completed', completed_at = ${Date.now()}, expires_at = ${Date.now() + 86_400_000} WHERE id = ${seeded.jobId}`);
  const zip = await sampled(b, async () => {
    const t0 = performance.now();
    const res = await b.user.call(`/api/jobs/${seeded.jobId}/download`, { signal: AbortSignal.timeout(BIG_TRANSFER_MS) });
    let bytes = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
    return { status: res.status, bytes, seconds: (performance.now() - t0) / 1000 };
  });
  log(`  1 GiB ZIP: ${zip.result.status} ${zip.result.bytes} bytes in ${zip.result.seconds.toFixed(1)} s, workerd RSS ${zip.baselineMiB.toFixed(0)} → peak ${zip.peakMiB.toFixed(0)} MiB`);
  return {
    upload: { bytes: GiB, seconds: up.result.seconds, baselineMiB: up.baselineMiB, peakMiB: up.peakMiB, status: up.result.status, retriedAfterReload: reloaded },
    zip: { bytes: zip.result.bytes, seconds: zip.result.seconds, baselineMiB: zip.baselineMiB, peakMiB: zip.peakMiB, status: zip.result.status },
    putRetries: retries,
  };
}
