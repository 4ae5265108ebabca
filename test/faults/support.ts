// Shared pieces of the fault drills: the real local stack (scripts/stack.ts) on free ports and a throwaway data
// dir, log capture, runner metrics, the bucket's real object list, live FFmpeg processes, and the end-state
// invariants every drill checks.
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { expect } from "vitest";
import { createDb, type Db } from "../../db/client";
import { BlobClient } from "../../runner/blobs";
import type { Stack } from "../../scripts/stack";
import { signInToEdge, type ApiSession } from "../helpers/api";
import { startTestStack } from "../helpers/test-stack";
import { until } from "../helpers/until";
import { bucketObjects, ffmpegPidsUnder } from "./inspect";

export { bucketObjects, ffmpegPidsUnder, until };

export const TERMINAL = ["completed", "failed", "cancelled"];

export interface LogLine {
  at: number;
  line: string;
}

export interface FaultStack {
  stack: Stack;
  dir: string;
  dataDir: string;
  metricsPort: number;
  /** The test's own database client (same server and token as the stack). */
  db: Db;
  /** Runner-side blob client: the edge's /internal endpoints with the stack's RUNNER_TOKEN. */
  blobs: BlobClient;
  /** A signed-in user on the edge (cookie session). */
  user: ApiSession;
  lines: LogLine[];
  /** Lines of one child (`runner-1`, `edge`, `db`, …). */
  linesOf(child: string): string[];
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Prometheus text of runner `i` (0-based) parsed to `name{labels}` → value. */
  metrics(i: number): Promise<Map<string, number>>;
  /** Live FFmpeg processes whose command line mentions this stack's directories (or `extraRoots`). */
  ffmpegPids(extraRoots?: string[]): Promise<number[]>;
  /** Every object in the local R2 bucket, read from miniflare's own store (sources, uploads, outputs, thumbs). */
  bucketObjects(): Promise<{ key: string; size: number }[]>;
  stop(): Promise<void>;
}

/** The last `n` of a stack's log lines, each with its time since the stack's first line: a drill's evidence. */
export function logTail(lines: readonly LogLine[], n: number): string {
  const t0 = lines[0]?.at ?? 0;
  return lines
    .slice(-n)
    .map((l) => `+${((l.at - t0) / 1000).toFixed(1)}s ${l.line}`)
    .join("\n");
}

/** Stacks started and not yet stopped: a failed drill prints their last log lines (test/setup/fault-logs.ts). */
export const liveFaultStacks = new Set<FaultStack>();

/** Settings that make leases, polls and grace periods fit a drill measured in seconds. */
export const FAST_RUNNER = { POLL_MS: "200", WATCH_MS: "200", LEASE_MS: "3000", STOP_GRACE_MS: "1000" };

export async function startFaultStack(opts: {
  label: string;
  runners: number;
  runnerEnv?: Record<string, string>;
  cronEveryMs?: number;
}): Promise<FaultStack> {
  const lines: LogLine[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const started = await startTestStack({
    prefix: `vr-fault-${opts.label}-`,
    runners: opts.runners,
    runnerEnv: { ...FAST_RUNNER, ...opts.runnerEnv },
    cronEveryMs: opts.cronEveryMs,
    // The drills play many jobs from one signed-in user; the per-user limits are not what they test.
    edgeVars: { USER_ACTIVE_JOBS: "1000", USER_QUEUED_VARIATIONS: "100000" },
    log: (line) => {
      lines.push({ at: Date.now(), line });
      if (process.env.FAULTS_VERBOSE) console.log(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    },
    logTail: () => logTail(lines, 60),
  });
  const { stack, dir, dataDir, metricsPort } = started;
  const db = createDb(stack.libsqlUrl, { authToken: stack.libsqlAuthToken, timeoutMs: 5_000 });
  // A stack that started but cannot sign in is stopped here, with its evidence: no drill holds it to clean up.
  const signedIn = async () => ({ user: await signInToEdge(stack.edgeUrl, db), blobs: new BlobClient({ edgeUrl: stack.edgeUrl, token: stack.runnerToken }) });
  const { user, blobs } = await signedIn().catch(async (err: unknown) => {
    const tail = logTail(lines, 60);
    db.$client.close();
    await started.stop();
    throw new Error(`signing in to the drill's edge failed: ${err instanceof Error ? err.message : String(err)}\n${tail}`);
  });

  const fs: FaultStack = {
    stack,
    dir,
    dataDir,
    metricsPort,
    db,
    blobs,
    user,
    lines,
    linesOf: (child) => lines.filter((l) => l.line.startsWith(`[${child}] `)).map((l) => l.line),
    waitForLog(re, timeoutMs = 60_000) {
      const hit = lines.find((l) => re.test(l.line));
      if (hit) return Promise.resolve(hit.line);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.findIndex((w) => w.re === re), 1);
          reject(new Error(`no log line matching ${re} within ${timeoutMs} ms:\n${logTail(lines, 40)}`));
        }, timeoutMs);
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async metrics(i) {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort + i}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
      const out = new Map<string, number>();
      for (const l of text.split("\n")) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(l);
        if (m) out.set(m[1]!, Number(m[2]));
      }
      return out;
    },
    ffmpegPids: (extraRoots = []) => ffmpegPidsUnder([dir, ...extraRoots]),
    bucketObjects: () => bucketObjects(join(dataDir, "wrangler")),
    async stop() {
      liveFaultStacks.delete(fs);
      db.$client.close();
      await started.stop();
    },
  };
  liveFaultStacks.add(fs);
  return fs;
}

export interface VariationRow {
  id: string;
  jobId: string;
  status: string;
  attempts: number;
  runnerId: string | null;
  outputKey: string | null;
  thumbnailKey: string | null;
  outputSize: number | null;
  stopStage: string | null;
  error: string | null;
  finishedAt: number | null;
}

export async function variationRows(db: Db, jobIds: string[]): Promise<VariationRow[]> {
  if (jobIds.length === 0) return [];
  return db.all<VariationRow>(sql`
    SELECT id, job_id AS jobId, status, attempts, runner_id AS runnerId, output_key AS outputKey,
      output_size AS outputSize, thumbnail_key AS thumbnailKey, stop_stage AS stopStage, error, finished_at AS finishedAt
    FROM variations WHERE job_id IN (SELECT value FROM json_each(${JSON.stringify(jobIds)})) ORDER BY rowid`);
}

/** The jobs' rows, with their completed variations counted as the API counts them (read without spending requests). */
export async function jobRows(db: Db, jobIds: string[]) {
  return db.all<{ id: string; status: string; cancelRequestedAt: number | null; totalVariations: number; completedVariations: number; error: string | null }>(sql`
    SELECT id, status, cancel_requested_at AS cancelRequestedAt, total_variations AS totalVariations,
      (SELECT count(*) FROM variations v WHERE v.job_id = jobs.id AND v.status = 'completed') AS completedVariations, error
    FROM jobs WHERE id IN (SELECT value FROM json_each(${JSON.stringify(jobIds)}))`);
}

export interface EndState {
  jobs: Record<string, number>;
  variations: Record<string, number>;
  objects: number;
  ffmpeg: number;
}

const tally = (xs: string[]) => xs.reduce<Record<string, number>>((acc, x) => ((acc[x] = (acc[x] ?? 0) + 1), acc), {});

/**
 * The invariants every drill ends with, checked against the database, the API and the bucket itself:
 * every job terminal; the API's counts add up to the total and match the rows; completed variations (and only
 * they) record an output, and that object exists with the recorded size; no object in the bucket that no row
 * records; no FFmpeg left running. Returns a summary to print.
 */
export async function expectCleanEndState(fs: FaultStack, jobIds: string[], extraRoots: string[] = []): Promise<EndState> {
  const jobs = await jobRows(fs.db, jobIds);
  expect(jobs).toHaveLength(jobIds.length);
  expect(jobs.filter((j) => !TERMINAL.includes(j.status))).toEqual([]);
  const rows = await variationRows(fs.db, jobIds);

  for (const id of jobIds) {
    const view = await fs.user.getJob(id);
    const mine = rows.filter((r) => r.jobId === id);
    const count = (s: string) => mine.filter((r) => r.status === s).length;
    expect({ id, total: view.totalVariations, completed: view.completedVariations, failed: view.failedVariations, cancelled: view.cancelledVariations }).toEqual({
      id,
      total: mine.length,
      completed: count("completed"),
      failed: count("failed"),
      cancelled: count("cancelled"),
    });
    expect(view.completedVariations + view.failedVariations + view.cancelledVariations).toBe(view.totalVariations);
    // Completed wins: a job whose every variation completed is completed, whatever cancel was asked.
    if (count("completed") === mine.length) expect(view.status).toBe("completed");
    if (view.status === "cancelled") expect(count("completed")).toBeLessThan(mine.length);
  }

  const recordedOutputs = rows.filter((r) => r.outputKey !== null);
  expect(recordedOutputs.filter((r) => r.status !== "completed")).toEqual([]);
  expect(rows.filter((r) => r.status === "completed" && r.outputKey === null)).toEqual([]);
  // A still belongs to a completed output only (the runner records both in one compare-and-set).
  expect(rows.filter((r) => r.thumbnailKey !== null && r.status !== "completed")).toEqual([]);

  // Every key in the bucket must be recorded by some row: sources, job thumbnails, outputs and their stills
  // (uploads/ belong to the large-file API, none here).
  const objects = await fs.bucketObjects();
  const keys = objects.map((o) => o.key);
  const recorded = new Set<string>(
    (
      await fs.db.all<{ k: string }>(sql`
        SELECT object_key AS k FROM sources
        UNION ALL SELECT thumbnail_key FROM jobs WHERE thumbnail_key IS NOT NULL
        UNION ALL SELECT output_key FROM variations WHERE output_key IS NOT NULL
        UNION ALL SELECT thumbnail_key FROM variations WHERE thumbnail_key IS NOT NULL`)
    ).map((r) => r.k),
  );
  expect(keys.filter((k) => !recorded.has(k))).toEqual([]);
  const sizes = new Map(objects.map((o) => [o.key, o.size]));
  expect(recordedOutputs.map((r) => ({ key: r.outputKey, size: sizes.get(r.outputKey!) }))).toEqual(
    recordedOutputs.map((r) => ({ key: r.outputKey, size: r.outputSize })),
  );
  const ffmpeg = await fs.ffmpegPids(extraRoots);
  expect(ffmpeg).toEqual([]);
  return {
    jobs: tally(jobs.map((j) => j.status)),
    variations: tally(rows.map((r) => r.status)),
    objects: keys.length,
    ffmpeg: ffmpeg.length,
  };
}

/** Creates `n` jobs of `variations` each from one small clip through POST /api/jobs (multipart). */
export async function createJobs(user: ApiSession, clip: string, n: number, variations: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await user.createJob([clip], variations)).id);
  return ids;
}

/** Prints a labelled, one-line-per-fact report of what a drill saw (the suite's log is its evidence). */
export function report(title: string, facts: Record<string, unknown>): void {
  const lines = Object.entries(facts).map(([k, v]) => `  ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  console.log(`\n[fault] ${title}\n${lines.join("\n")}`);
}
