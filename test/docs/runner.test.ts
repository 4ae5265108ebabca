// Keeps the transition tables of docs/runner.md true: every row is performed against a real database (the local
// libSQL server) and its result checked, and every scenario this file knows must be a row of a table.
import { readFileSync } from "node:fs";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../db/client";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../db/limits";
import { addVariations, pauseJob, requestCancel, resumeJob, retryJob } from "../../db/queries/jobs";
import { finalizeJob } from "../../db/queries/finalize";
import {
  cancelJobsOfDisabledAccounts,
  cancelQueuedVariationsOfCancellingJobs,
  failStaleQueuedJobs,
  listIdleActiveJobIds,
} from "../../db/queries/lifecycle";
import { setUserDisabled } from "../../db/queries/users";
import {
  cancelVariation,
  claimVariation,
  failSourceVariations,
  failVariation,
  finishVariation,
  MAX_ATTEMPTS,
  recordVariationParams,
  reapStatement,
  recoverExpiredLeases,
  isSeedTaken,
  redrawVariation,
  releaseVariation,
  requeueVariation,
  runnerRoundTrip,
} from "../../db/queries/variations";
import { jobs, users, variations } from "../../db/schema";
import { DbCallError, retryDb } from "../../runner/db-retry";
import { useTestLibsql } from "../helpers/libsql";
import { freshDb, seedJob, type SeededJob } from "../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 30_000;
const R = "r1";

/** Disables a user as an enabled admin of the same database would (the disable checks its actor). */
async function disableAsAdmin(db: Db, userId: string, now: number) {
  await db.insert(users).values({ id: "admin", email: "admin@test.local", passwordHash: "x", role: "admin", createdAt: NOW }).onConflictDoNothing();
  await setUserDisabled(db, { actorId: "admin", userId, disabled: true }, now);
}

interface Row {
  from: string;
  to: string;
  fn: string;
}

/** The rows of the table under `heading` in docs/runner.md. */
function table(heading: string): Row[] {
  const doc = readFileSync(new URL("../../docs/runner.md", import.meta.url), "utf8");
  const start = doc.indexOf(heading);
  expect(start, `docs/runner.md has "${heading}"`).toBeGreaterThan(-1);
  const lines = doc.slice(start).split("\n").slice(1);
  const rows: Row[] = [];
  let inTable = false;
  for (const line of lines) {
    if (!line.startsWith("|")) {
      if (inTable) break;
      continue;
    }
    inTable = true;
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    if (cells[0] === "from" || /^-+$/.test(cells[0]!)) continue;
    rows.push({ from: cells[0]!, to: cells[1]!, fn: cells[2]! });
  }
  return rows;
}

const key = (r: Row) => `${r.from} → ${r.to}: ${r.fn}`;

async function variation(db: Db, id: string) {
  const [row] = await db.select().from(variations).where(eq(variations.id, id));
  return row!;
}
const vStatus = async (db: Db, id: string) => {
  const v = await variation(db, id);
  // "expired" is a running row whose lease is in the past (documented as such).
  return v.status === "running" && v.leaseExpiresAt !== null && v.leaseExpiresAt < NOW + 10 ? "expired" : v.status;
};
const jStatus = async (db: Db, id: string) => (await db.select().from(jobs).where(eq(jobs.id, id)))[0]!.status;

async function seed(db: Db, n = 1): Promise<SeededJob & { v: string }> {
  const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: n, createdAt: NOW - 1000 });
  return { ...job, v: job.variationIds[0]! };
}
const claim = async (db: Db, now = NOW) => (await claimVariation(db, { runnerId: R, leaseMs: LEASE, now }))!;
const own = (v: string, attempt = 1) => ({ variationId: v, runnerId: R, attempt });
const viewer = (job: SeededJob) => ({ id: job.userId, email: `${job.userId}@test.local`, role: "user" as const });
const cancelRequested = (db: Db, jobId: string) =>
  db.run(sql`UPDATE jobs SET cancel_requested_at = ${NOW}, status = 'cancelling' WHERE id = ${jobId}`);
const limits = userLimitsFrom(USER_LIMIT_DEFAULTS);
const reopen = (j: SeededJob) => ({ jobId: j.jobId, viewer: viewer(j), limits });
const pause = (db: Db, j: SeededJob, now = NOW + 1) => pauseJob(db, { jobId: j.jobId, viewer: viewer(j) }, now);
/** The cap count only: the running claim (attempt 1) keeps its number. */
const atCap = (db: Db, v: string) => db.run(sql`UPDATE variations SET attempts = ${MAX_ATTEMPTS} WHERE id = ${v}`);
const finish = (db: Db, v: string, jobId: string, attempt = 1) =>
  finishVariation(db, { ...own(v, attempt), outputKey: `outputs/${jobId}/${v}.a${attempt}.mp4`, outputSize: 1, now: NOW + 5 });
const cancel = (db: Db, j: SeededJob, now = NOW + 1) => requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, now);
/** Past the lease of a claim made at NOW. */
const EXPIRED = NOW + LEASE + 1;
/** Another runner's claim round trip once the lease has run out: its reap runs before its claim. */
const reap = (db: Db) => runnerRoundTrip(db, { runnerId: "r2", now: EXPIRED, leaseMs: LEASE, claim: 1 });
/**
 * A job whose only active variation is the second of two, running, with the first completed: whatever ends the
 * second ends the job completed, failed ones counted.
 */
async function oneCompleted(db: Db): Promise<SeededJob & { v: string; last: string }> {
  const j = await seed(db, 2);
  await claim(db);
  const last = (await claim(db)).id;
  expect(await finish(db, j.v, j.jobId)).toBe(true);
  return { ...j, last };
}
/** As {@link oneCompleted}, with the two variations from two sources, so a source verdict reaches only the last. */
async function oneCompletedTwoSources(db: Db): Promise<SeededJob & { last: string; lastSource: string }> {
  const j = await seedJob(db, { sources: [{ objectKey: "sources/j/a" }, { objectKey: "sources/j/b" }], createdAt: NOW - 1000 });
  await claim(db);
  const last = await claim(db);
  expect(await finish(db, j.variationIds[0]!, j.jobId)).toBe(true);
  return { ...j, last: last.id, lastSource: last.sourceId };
}
/**
 * The reap committed but the finalize after its batch was lost (round-trip.ts swallows a failing one): the job is
 * active with nothing queued or running, the state only the cron's finalizeIdleJobs repairs.
 */
const reapWithoutFinalize = (db: Db) => reapStatement(db, EXPIRED);
/**
 * The edge cron's finalizeIdleJobs (edge/lifecycle/finalize-idle.ts) through the queries it calls: edge code does
 * not typecheck under this project's Node types, so it cannot be imported here.
 */
async function finalizeIdle(db: Db, jobId: string, now = EXPIRED + 1) {
  await cancelQueuedVariationsOfCancellingJobs(db, now);
  expect(await listIdleActiveJobIds(db, 10)).toEqual([jobId]);
  await finalizeJob(db, jobId, now);
}
const admin = { id: "admin", email: "admin@test.local", role: "admin" as const };

/** Each scenario puts its subject in `from`, performs the arrow and returns [status before, status after]. */
type Scenario = (db: Db) => Promise<[string, string]>;

const variationScenarios: Record<string, Scenario> = {
  "queued → running: runnerRoundTrip: claim": async (db) => {
    const j = await seed(db);
    const before = await vStatus(db, j.v);
    await runnerRoundTrip(db, { runnerId: R, now: NOW, leaseMs: LEASE, claim: 1 });
    return [before, await vStatus(db, j.v)];
  },
  "queued → cancelled: requestCancel": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    const other = j.variationIds[1]!;
    const before = await vStatus(db, other);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 1);
    return [before, await vStatus(db, other)];
  },
  "queued → failed: failSourceVariations": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    const other = j.variationIds[1]!;
    const before = await vStatus(db, other);
    await failSourceVariations(db, { sourceId: j.sourceIds[0]!, error: "not a decodable video", now: NOW + 1 });
    return [before, await vStatus(db, other)];
  },
  "running → completed: finishVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    expect(await finish(db, j.v, j.jobId)).toBe(true);
    return [before, await vStatus(db, j.v)];
  },
  "completed → completed: finishVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await finish(db, j.v, j.jobId);
    const before = await vStatus(db, j.v);
    expect(await finish(db, j.v, j.jobId)).toBe(true);
    return [before, await vStatus(db, j.v)];
  },
  "running → running: redrawVariation": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    const before = await vStatus(db, j.v);
    const redraw = (seed: number) => redrawVariation(db, { ...own(j.v), seed, params: { recipe: 1 }, reason: "too close", maxRedraws: 2 });
    expect(await redraw(900_001)).toBe("redrawn");
    // The same re-draw sent again (its reply was lost) reads back as done and spends nothing more of the bound.
    expect(await redraw(900_001)).toBe("redrawn");
    expect((await db.select().from(variations).where(eq(variations.id, j.v)))[0]!.redraws).toBe(1);
    // A seed another variation of the job holds is refused by the job's unique seed index.
    const [sibling] = await db.select().from(variations).where(eq(variations.id, j.variationIds[1]!));
    // The runner tells that apart from other failures (and draws again), also through its own retry wrapper.
    const clash = await retryDb(() => redraw(sibling!.seed)).catch((err: unknown) => err);
    expect(clash).toBeInstanceOf(DbCallError);
    expect(isSeedTaken(clash)).toBe(true);
    expect(isSeedTaken(new DbCallError("Failed query: update variations …", { cause: new Error("SQLITE_BUSY: database is locked") }))).toBe(false);
    expect(await redraw(900_002)).toBe("redrawn");
    // Bounded: the third is refused, nothing changes.
    expect(await redraw(900_003)).toBe("bound");
    const [row] = await db.select().from(variations).where(eq(variations.id, j.v));
    expect(row).toMatchObject({ status: "running", seed: 900_002, redraws: 2, redrawReason: "too close", progress: 0 });
    // Another attempt (or runner) cannot re-draw it.
    expect(await redrawVariation(db, { ...own(j.v, 2), seed: 900_004, params: {}, reason: "x", maxRedraws: 5 })).toBe("lost");
    return [before, await vStatus(db, j.v)];
  },
  "running → failed: failVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await failVariation(db, { ...own(j.v), error: "ffmpeg exited with code 1", now: NOW + 1 });
    return [before, await vStatus(db, j.v)];
  },
  "running → cancelled: cancelVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancelRequested(db, j.jobId);
    const before = await vStatus(db, j.v);
    await cancelVariation(db, { ...own(j.v), stopStage: "q", now: NOW + 1 });
    return [before, await vStatus(db, j.v)];
  },
  "running → queued: cancelVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await pause(db, j);
    const before = await vStatus(db, j.v);
    await cancelVariation(db, { ...own(j.v), stopStage: "q", now: NOW + 2 });
    expect((await variation(db, j.v)).attempts).toBe(0);
    expect(await jStatus(db, j.jobId)).toBe("paused");
    return [before, await vStatus(db, j.v)];
  },
  "failed → queued: retryJob": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    const second = await claim(db);
    await failVariation(db, { ...own(second.id), error: "bad", now: NOW + 1 });
    await finish(db, j.v, j.jobId);
    const before = await vStatus(db, second.id);
    await retryJob(db, reopen(j), NOW + 10);
    expect((await variation(db, second.id)).attempts).toBe(0);
    return [before, await vStatus(db, second.id)];
  },
  "cancelled → queued: resumeJob": async (db) => {
    const j = await seed(db);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW);
    const before = await vStatus(db, j.v);
    await resumeJob(db, reopen(j), NOW + 1);
    return [before, await vStatus(db, j.v)];
  },
  "failed → queued: resumeJob": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    await failVariation(db, { ...own(j.v), error: "bad", now: NOW + 1 });
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 2);
    const before = await vStatus(db, j.v);
    await resumeJob(db, reopen(j), NOW + 3);
    expect((await variation(db, j.v)).attempts).toBe(0);
    return [before, await vStatus(db, j.v)];
  },
  "running → queued: releaseVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await releaseVariation(db, { ...own(j.v), now: NOW + 1 });
    expect((await variation(db, j.v)).attempts).toBe(0);
    return [before, await vStatus(db, j.v)];
  },
  "running → cancelled: releaseVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancelRequested(db, j.jobId);
    const before = await vStatus(db, j.v);
    await releaseVariation(db, { ...own(j.v), now: NOW + 1 });
    return [before, await vStatus(db, j.v)];
  },
  "running → queued: requeueVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await requeueVariation(db, { ...own(j.v), error: "edge unreachable", now: NOW + 1 });
    expect((await variation(db, j.v)).attempts).toBe(1);
    return [before, await vStatus(db, j.v)];
  },
  "running → failed: requeueVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    const before = await vStatus(db, j.v);
    await requeueVariation(db, { ...own(j.v), error: "encode stalled", now: NOW + 1 });
    return [before, await vStatus(db, j.v)];
  },
  "running → queued: runnerRoundTrip: stranded": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await runnerRoundTrip(db, { runnerId: R, now: NOW + 1, leaseMs: LEASE, inHand: [] });
    expect((await variation(db, j.v)).attempts).toBe(0);
    return [before, await vStatus(db, j.v)];
  },
  "running → expired: runnerRoundTrip: stranded": async (db) => {
    const j = await seed(db);
    await claim(db);
    await recordVariationParams(db, { ...own(j.v), params: { zoom: 1 } });
    const before = await vStatus(db, j.v);
    await runnerRoundTrip(db, { runnerId: R, now: NOW + 1, leaseMs: LEASE, inHand: [] });
    return [before, await vStatus(db, j.v)];
  },
  "running → queued: recoverExpiredLeases": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await recoverExpiredLeases(db, NOW + LEASE + 1);
    return [before, await vStatus(db, j.v)];
  },
  "running → failed: recoverExpiredLeases": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    const before = await vStatus(db, j.v);
    await recoverExpiredLeases(db, NOW + LEASE + 1);
    expect((await variation(db, j.v)).error).toBe(`runner lost ${MAX_ATTEMPTS} times (lease expired); giving up`);
    return [before, await vStatus(db, j.v)];
  },
  "running → cancelled: recoverExpiredLeases": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancelRequested(db, j.jobId);
    const before = await vStatus(db, j.v);
    await recoverExpiredLeases(db, NOW + LEASE + 1);
    return [before, await vStatus(db, j.v)];
  },
  "running → failed: failSourceVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await failSourceVariations(db, { sourceId: j.sourceIds[0]!, error: "not a decodable video", now: NOW + 1 });
    return [before, await vStatus(db, j.v)];
  },
  "running → running: runnerRoundTrip: claim": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await vStatus(db, j.v);
    await runnerRoundTrip(db, { runnerId: "r2", now: EXPIRED, leaseMs: LEASE, claim: 1 });
    expect(await variation(db, j.v)).toMatchObject({ runnerId: "r2", claims: 2, attempts: 2 });
    // The first runner may still be encoding: the attempt in its ownership is what keeps its late settle out.
    expect(await failVariation(db, { ...own(j.v), error: "late", now: EXPIRED + 1 })).toBe(false);
    return [before, await vStatus(db, j.v)];
  },
  "running → failed: runnerRoundTrip: reap": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    const before = await vStatus(db, j.v);
    await reap(db);
    expect((await variation(db, j.v)).error).toBe(`runner lost ${MAX_ATTEMPTS} times (lease expired); giving up`);
    return [before, await vStatus(db, j.v)];
  },
  "running → cancelled: runnerRoundTrip: reap": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancelRequested(db, j.jobId);
    const before = await vStatus(db, j.v);
    await reap(db);
    return [before, await vStatus(db, j.v)];
  },
  "queued → cancelled: cancelQueuedVariationsOfCancellingJobs": async (db) => {
    const j = await seed(db);
    await disableAsAdmin(db, j.userId, NOW);
    // The cron cancels a held account's job without touching its variations: no runner claims them any more.
    await cancelJobsOfDisabledAccounts(db, NOW, NOW + 1);
    const before = await vStatus(db, j.v);
    await cancelQueuedVariationsOfCancellingJobs(db, NOW + 2);
    return [before, await vStatus(db, j.v)];
  },
  "queued → failed: failStaleQueuedJobs": async (db) => {
    const j = await seed(db);
    const before = await vStatus(db, j.v);
    await failStaleQueuedJobs(db, NOW, NOW + 1);
    expect((await variation(db, j.v)).error).toBe("expired while queued");
    return [before, await vStatus(db, j.v)];
  },
  "running → cancelled: requeueVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancelRequested(db, j.jobId);
    const before = await vStatus(db, j.v);
    expect(await requeueVariation(db, { ...own(j.v), error: "edge unreachable", now: NOW + 1 })).toBe("cancelled");
    return [before, await vStatus(db, j.v)];
  },
  "running → cancelled: runnerRoundTrip: stranded": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancelRequested(db, j.jobId);
    const before = await vStatus(db, j.v);
    await runnerRoundTrip(db, { runnerId: R, now: NOW + 1, leaseMs: LEASE, inHand: [] });
    return [before, await vStatus(db, j.v)];
  },
};

const jobScenarios: Record<string, Scenario> = {
  "queued → processing: runnerRoundTrip: claim": async (db) => {
    const j = await seed(db);
    const before = await jStatus(db, j.jobId);
    await runnerRoundTrip(db, { runnerId: R, now: NOW, leaseMs: LEASE, claim: 1 });
    return [before, await jStatus(db, j.jobId)];
  },
  "queued → cancelled: requestCancel": async (db) => {
    const j = await seed(db);
    const before = await jStatus(db, j.jobId);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → cancelling: requestCancel": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await jStatus(db, j.jobId);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 1);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: finishVariation": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    const second = await claim(db);
    await failVariation(db, { ...own(second.id), error: "bad", now: NOW + 1 });
    const before = await jStatus(db, j.jobId);
    await finish(db, j.v, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → failed: failVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await jStatus(db, j.jobId);
    await failVariation(db, { ...own(j.v), error: "bad", now: NOW + 1 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: cancelVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await cancelVariation(db, { ...own(j.v), stopStage: "q", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → completed: finishVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await finish(db, j.v, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "queued → paused: pauseJob": async (db) => {
    const j = await seed(db);
    const before = await jStatus(db, j.jobId);
    await pause(db, j);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → paused: pauseJob": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await jStatus(db, j.jobId);
    await pause(db, j);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → queued: resumeJob": async (db) => {
    const j = await seed(db);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await resumeJob(db, reopen(j), NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → processing: resumeJob": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    await pause(db, j);
    await cancelVariation(db, { ...own(j.v), stopStage: "q", now: NOW + 2 });
    const before = await jStatus(db, j.jobId);
    await resumeJob(db, reopen(j), NOW + 3);
    expect(await vStatus(db, j.v)).toBe("queued");
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → cancelling: requestCancel": async (db) => {
    const j = await seed(db);
    await claim(db);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → cancelled: requestCancel": async (db) => {
    const j = await seed(db, 2);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: finishVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await finish(db, j.v, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → failed: failVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await failVariation(db, { ...own(j.v), error: "bad", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelled → processing: resumeJob": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 1);
    await cancelVariation(db, { ...own(j.v), stopStage: "q", now: NOW + 2 });
    const before = await jStatus(db, j.jobId);
    await resumeJob(db, reopen(j), NOW + 3);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelled → queued: resumeJob": async (db) => {
    const j = await seed(db);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW);
    const before = await jStatus(db, j.jobId);
    await resumeJob(db, reopen(j), NOW + 1);
    return [before, await jStatus(db, j.jobId)];
  },
  "completed → processing: retryJob": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    const second = await claim(db);
    await failVariation(db, { ...own(second.id), error: "bad", now: NOW + 1 });
    await finish(db, j.v, j.jobId);
    const before = await jStatus(db, j.jobId);
    await retryJob(db, reopen(j), NOW + 10);
    return [before, await jStatus(db, j.jobId)];
  },
  "failed → processing: retryJob": async (db) => {
    const j = await seed(db);
    await claim(db);
    await failVariation(db, { ...own(j.v), error: "bad", now: NOW + 1 });
    const before = await jStatus(db, j.jobId);
    await retryJob(db, reopen(j), NOW + 10);
    return [before, await jStatus(db, j.jobId)];
  },
  "failed → queued: retryJob": async (db) => {
    const j = await seed(db);
    await failStaleQueuedJobs(db, NOW, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await retryJob(db, reopen(j), NOW + 10);
    return [before, await jStatus(db, j.jobId)];
  },
  "completed → processing: addVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    await finish(db, j.v, j.jobId);
    const before = await jStatus(db, j.jobId);
    await addVariations(db, { ...reopen(j), perSource: 2 }, NOW + 10);
    return [before, await jStatus(db, j.jobId)];
  },
  "failed → processing: addVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    await failVariation(db, { ...own(j.v), error: "bad", now: NOW + 1 });
    const before = await jStatus(db, j.jobId);
    await addVariations(db, { ...reopen(j), perSource: 1 }, NOW + 10);
    return [before, await jStatus(db, j.jobId)];
  },
  "queued → cancelling: cancelJobsOfDisabledAccounts": async (db) => {
    const j = await seed(db);
    await disableAsAdmin(db, j.userId, NOW);
    const before = await jStatus(db, j.jobId);
    await cancelJobsOfDisabledAccounts(db, NOW, NOW + 1);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → cancelling: cancelJobsOfDisabledAccounts": async (db) => {
    const j = await seed(db);
    await claim(db);
    await disableAsAdmin(db, j.userId, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await cancelJobsOfDisabledAccounts(db, NOW + 1, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → cancelling: cancelJobsOfDisabledAccounts": async (db) => {
    const j = await seed(db);
    await pauseJob(db, { jobId: j.jobId, viewer: viewer(j) }, NOW);
    await disableAsAdmin(db, j.userId, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await cancelJobsOfDisabledAccounts(db, NOW + 1, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelled → queued: addVariations": async (db) => {
    const j = await seed(db);
    await requestCancel(db, { jobId: j.jobId, viewer: viewer(j) }, NOW);
    const before = await jStatus(db, j.jobId);
    await addVariations(db, { ...reopen(j), perSource: 1 }, NOW + 1);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelled → processing: addVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    await cancelVariation(db, { ...own(j.v), stopStage: "q", now: NOW + 2 });
    const before = await jStatus(db, j.jobId);
    await addVariations(db, { ...reopen(j), perSource: 1 }, NOW + 3);
    return [before, await jStatus(db, j.jobId)];
  },
  "failed → queued: addVariations": async (db) => {
    const j = await seed(db);
    await failStaleQueuedJobs(db, NOW, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await addVariations(db, { ...reopen(j), perSource: 1 }, NOW + 10);
    return [before, await jStatus(db, j.jobId)];
  },
  "queued → failed: failStaleQueuedJobs": async (db) => {
    const j = await seed(db);
    const before = await jStatus(db, j.jobId);
    await failStaleQueuedJobs(db, NOW, NOW + 1);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → cancelled: requestCancel": async (db) => {
    const j = await seed(db);
    await claim(db);
    await releaseVariation(db, { ...own(j.v), now: NOW + 1 });
    const before = await jStatus(db, j.jobId);
    await cancel(db, j, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: requestCancel": async (db) => {
    const j = await seed(db);
    await disableAsAdmin(db, j.userId, NOW);
    await cancelJobsOfDisabledAccounts(db, NOW, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await requestCancel(db, { jobId: j.jobId, viewer: admin }, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: finishVariation": async (db) => {
    const j = await seed(db, 2);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    expect(await finish(db, j.v, j.jobId)).toBe(true);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: failVariation": async (db) => {
    const j = await oneCompleted(db);
    const before = await jStatus(db, j.jobId);
    await failVariation(db, { ...own(j.last), error: "bad", now: NOW + 6 });
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: failVariation": async (db) => {
    const j = await oneCompleted(db);
    await pause(db, j, NOW + 6);
    const before = await jStatus(db, j.jobId);
    await failVariation(db, { ...own(j.last), error: "bad", now: NOW + 7 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: failVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await failVariation(db, { ...own(j.v), error: "bad", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: releaseVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await releaseVariation(db, { ...own(j.v), now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: requeueVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await requeueVariation(db, { ...own(j.v), error: "edge unreachable", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → failed: requeueVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    const before = await jStatus(db, j.jobId);
    await requeueVariation(db, { ...own(j.v), error: "encode stalled", now: NOW + 1 });
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: requeueVariation": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    const before = await jStatus(db, j.jobId);
    await requeueVariation(db, { ...own(j.last), error: "encode stalled", now: NOW + 6 });
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → failed: requeueVariation": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await requeueVariation(db, { ...own(j.v), error: "encode stalled", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: requeueVariation": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    await pause(db, j, NOW + 6);
    const before = await jStatus(db, j.jobId);
    await requeueVariation(db, { ...own(j.last), error: "encode stalled", now: NOW + 7 });
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → failed: failSourceVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    const before = await jStatus(db, j.jobId);
    await failSourceVariations(db, { sourceId: j.sourceIds[0]!, error: "not a decodable video", now: NOW + 1 });
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: failSourceVariations": async (db) => {
    const j = await oneCompletedTwoSources(db);
    const before = await jStatus(db, j.jobId);
    await failSourceVariations(db, { sourceId: j.lastSource, error: "not a decodable video", now: NOW + 6 });
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → failed: failSourceVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await failSourceVariations(db, { sourceId: j.sourceIds[0]!, error: "not a decodable video", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: failSourceVariations": async (db) => {
    const j = await oneCompletedTwoSources(db);
    await pause(db, j, NOW + 6);
    const before = await jStatus(db, j.jobId);
    await failSourceVariations(db, { sourceId: j.lastSource, error: "not a decodable video", now: NOW + 7 });
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: failSourceVariations": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await failSourceVariations(db, { sourceId: j.sourceIds[0]!, error: "not a decodable video", now: NOW + 2 });
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → failed: runnerRoundTrip: reap": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    const before = await jStatus(db, j.jobId);
    await reap(db);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: runnerRoundTrip: reap": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    const before = await jStatus(db, j.jobId);
    await reap(db);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → failed: runnerRoundTrip: reap": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await reap(db);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: runnerRoundTrip: reap": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    await pause(db, j, NOW + 6);
    const before = await jStatus(db, j.jobId);
    await reap(db);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: runnerRoundTrip: reap": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await reap(db);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: runnerRoundTrip: stranded": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await runnerRoundTrip(db, { runnerId: R, now: NOW + 2, leaseMs: LEASE, inHand: [] });
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → failed: recoverExpiredLeases": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    const before = await jStatus(db, j.jobId);
    await recoverExpiredLeases(db, EXPIRED);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: recoverExpiredLeases": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    const before = await jStatus(db, j.jobId);
    await recoverExpiredLeases(db, EXPIRED);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → failed: recoverExpiredLeases": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    await pause(db, j);
    const before = await jStatus(db, j.jobId);
    await recoverExpiredLeases(db, EXPIRED);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: recoverExpiredLeases": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    await pause(db, j, NOW + 6);
    const before = await jStatus(db, j.jobId);
    await recoverExpiredLeases(db, EXPIRED);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: recoverExpiredLeases": async (db) => {
    const j = await seed(db);
    await claim(db);
    await cancel(db, j);
    const before = await jStatus(db, j.jobId);
    await recoverExpiredLeases(db, EXPIRED);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → failed: finalizeJob": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    await reapWithoutFinalize(db);
    const before = await jStatus(db, j.jobId);
    await finalizeIdle(db, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "processing → completed: finalizeJob": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    await reapWithoutFinalize(db);
    const before = await jStatus(db, j.jobId);
    await finalizeIdle(db, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → failed: finalizeJob": async (db) => {
    const j = await seed(db);
    await claim(db);
    await atCap(db, j.v);
    await pause(db, j);
    await reapWithoutFinalize(db);
    const before = await jStatus(db, j.jobId);
    await finalizeIdle(db, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "paused → completed: finalizeJob": async (db) => {
    const j = await oneCompleted(db);
    await atCap(db, j.last);
    await pause(db, j, NOW + 6);
    await reapWithoutFinalize(db);
    const before = await jStatus(db, j.jobId);
    await finalizeIdle(db, j.jobId);
    return [before, await jStatus(db, j.jobId)];
  },
  "cancelling → cancelled: finalizeJob": async (db) => {
    const j = await seed(db);
    await disableAsAdmin(db, j.userId, NOW);
    await cancelJobsOfDisabledAccounts(db, NOW, NOW + 1);
    const before = await jStatus(db, j.jobId);
    await finalizeIdle(db, j.jobId, NOW + 2);
    return [before, await jStatus(db, j.jobId)];
  },
};

describe.each([
  ["Variation transitions", "#### Variation transitions", variationScenarios],
  ["Job transitions", "#### Job transitions", jobScenarios],
] as const)("docs/runner.md: %s", (_name, heading, scenarios) => {
  const rows = table(heading);

  it("lists every arrow the tests know, and the tests know every arrow it lists", () => {
    expect(rows.map(key).sort()).toEqual(Object.keys(scenarios).sort());
  });

  it.each(rows.map((r) => [key(r), r] as const))("performs %s", async (k, row) => {
    const scenario = scenarios[k];
    expect(scenario, `a scenario for "${k}"`).toBeDefined();
    const { db } = await freshDb(server, `sm_${Object.keys(scenarios).indexOf(k)}_${heading.length}`);
    expect(await scenario!(db)).toEqual([row.from, row.to]);
  });
});
