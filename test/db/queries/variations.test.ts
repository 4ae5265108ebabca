import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { createDb } from "../../../db/client";
import {
  cancelVariation,
  claimVariation,
  claimVariations,
  failSourceVariations,
  failVariation,
  finishVariation,
  getJobOutputs,
  heartbeatVariations,
  recordVariationParams,
  recoverExpiredLeases,
  recoverRunnerVariations,
  releaseVariation,
  requeueVariation,
  runnerRoundTrip,
} from "../../../db/queries/variations";
import { DEFAULT_EFFECTS_JSON, parseStoredEffects } from "../../../db/effects";
import { outputKey } from "../../../db/keys";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../../db/limits";
import { retryJob } from "../../../db/queries/jobs";
import { jobs, runners, sources, variations } from "../../../db/schema";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, getJobRow, getVariationRows, requestCancelRow, seedJob } from "../../helpers/seed";
import { statementsOf } from "../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 30_000;
const src = [{ objectKey: "sources/j/s" }];

async function variation(db: Db, id: string) {
  const [row] = await db.select().from(variations).where(eq(variations.id, id));
  return row!;
}

describe("claimVariation", () => {
  it("returns the job's effects with the claim, so every runner derives the same parameters", async () => {
    const { db } = await freshDb(server, "claim_effects");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 1000 });
    const effects = JSON.stringify({ intensity: "strong", families: ["rotate", "mirror"] });
    await db.update(jobs).set({ effects }).where(eq(jobs.id, job.jobId));
    const claimed = await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    expect(claimed?.jobEffects).toBe(effects);
    expect(parseStoredEffects(claimed!.jobEffects)).toEqual({ intensity: "strong", families: ["rotate", "mirror"] });
  });

  it("takes the oldest queued variation, leases it and moves its job queued → processing", async () => {
    const { db } = await freshDb(server, "claim_oldest");
    const older = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW - 2000 });
    // Same owner: between users the turns decide (see "fair share between users").
    const newer = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW - 1000, userId: older.userId });

    const claimed = await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    expect(claimed).toMatchObject({
      id: older.variationIds[0],
      jobId: older.jobId,
      sourceId: older.sourceIds[0],
      position: 1,
      attempt: 1,
      leaseExpiresAt: NOW + LEASE,
      sourceKey: "sources/j/s",
      sourcePosition: 1,
      sourceDurationMs: null,
      jobThumbnailKey: null,
      // A job that named no effects: the default look.
      jobEffects: DEFAULT_EFFECTS_JSON,
    });
    expect(await variation(db, older.variationIds[0]!)).toMatchObject({
      status: "running",
      runnerId: "r1",
      startedAt: NOW,
      attempts: 1,
    });
    expect(await getJobRow(db, older.jobId)).toMatchObject({ status: "processing", startedAt: NOW });
    expect((await getJobRow(db, newer.jobId))?.status).toBe("queued");

    const second = await claimVariation(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + 10 });
    expect(second?.id).toBe(older.variationIds[1]);
    // The job's start time is its first claim, not a later one.
    expect((await getJobRow(db, older.jobId))?.startedAt).toBe(NOW);
  });

  it("returns null when nothing is claimable", async () => {
    const { db } = await freshDb(server, "claim_empty");
    expect(await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW })).toBeNull();
  });

  it("never claims a variation of a job whose cancel was requested", async () => {
    const { db } = await freshDb(server, "claim_cancel");
    const job = await seedJob(db, { sources: src, variationsPerSource: 2, status: "processing" });
    // Cancel requested but the queued variations not yet cancelled (e.g. the edge's batch is still in flight).
    await db.run(sql`UPDATE jobs SET cancel_requested_at = ${NOW}, status = 'cancelling' WHERE id = ${job.jobId}`);
    expect(await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW })).toBeNull();
    const rows = await getVariationRows(db, job.jobId);
    expect(rows.map((r) => r.status)).toEqual(["queued", "queued"]);
  });

  it("takes over a running variation whose lease expired, counting a second attempt, but not an unexpired one", async () => {
    const { db } = await freshDb(server, "claim_expired");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "dead", leaseMs: LEASE, now: NOW });
    expect(await claimVariation(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + LEASE - 1 })).toBeNull();
    const taken = await claimVariation(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + LEASE + 1 });
    expect(taken).toMatchObject({ id: job.variationIds[0], attempt: 2 });
    expect(await variation(db, job.variationIds[0]!)).toMatchObject({ runnerId: "r2", status: "running" });
  });

  it("fails a variation whose lease expired after the third attempt instead of handing it out again", async () => {
    const { db } = await freshDb(server, "claim_cap");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    let now = NOW;
    for (const runner of ["a", "b", "c"]) {
      expect(await claimVariation(db, { runnerId: runner, leaseMs: LEASE, now })).not.toBeNull();
      now += LEASE + 1;
    }
    const result = await claimVariations(db, { runnerId: "d", leaseMs: LEASE, now });
    expect(result.claimed).toEqual([]);
    expect(result.reaped).toEqual([{ id: job.variationIds[0], jobId: job.jobId, status: "failed" }]);
    const row = await variation(db, job.variationIds[0]!);
    expect(row).toMatchObject({ status: "failed", attempts: 3, finishedAt: now });
    expect(row.error).toMatch(/runner lost 3 times/);
    // The reap finalized the job: its only variation failed.
    expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "failed", completedAt: now });
  });

  it("claims up to the given number of variations in one call and refreshes the runner row with it", async () => {
    const { db } = await freshDb(server, "claim_many");
    const job = await seedJob(db, { sources: src, variationsPerSource: 3 });
    const beat = { id: "r1", host: "h", version: "1", concurrency: 2, active: 0 };
    const { claimed } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 2, beat });
    expect(claimed.map((c) => c.id)).toEqual(job.variationIds.slice(0, 2));
    const [runner] = await db.select().from(runners).where(eq(runners.id, "r1"));
    expect(runner).toMatchObject({ host: "h", concurrency: 2, lastSeenAt: NOW });
  });

  it("never hands one variation to two runners claiming at the same time", async () => {
    const { url } = await freshDb(server, "claim_race");
    const db = createDb(url);
    const job = await seedJob(db, { sources: src, variationsPerSource: 12 });
    // Separate clients so the claims really travel as concurrent HTTP requests.
    const clients = Array.from({ length: 6 }, () => createDb(url));
    const results = await Promise.all(
      clients.flatMap((c, i) =>
        Array.from({ length: 4 }, (_, k) => claimVariation(c, { runnerId: `r${i}`, leaseMs: LEASE, now: NOW + k })),
      ),
    );
    const ids = results.flatMap((r) => (r ? [r.id] : []));
    expect(ids).toHaveLength(12);
    expect(new Set(ids).size).toBe(12);
    const rows = await getVariationRows(db, job.jobId);
    expect(rows.every((r) => r.status === "running" && r.attempts === 1)).toBe(true);
  });
});

describe("fair share between users", () => {
  it("gives a freed runner slot to another user's small job before a user's big backlog", async () => {
    const { db } = await freshDb(server, "fair_small_job");
    // User A: 10 jobs × 20 variations, queued first; two runner slots busy with A's work.
    const a: string[] = [];
    let userA: string | undefined;
    for (let i = 0; i < 10; i++) {
      const job = await seedJob(db, { sources: src, variationsPerSource: 20, createdAt: NOW + i, userId: userA });
      userA = job.userId;
      a.push(job.jobId);
    }
    const slots = [
      await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW + 100 }),
      await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW + 100 }),
    ];
    expect(slots.map((c) => c?.jobId)).toEqual([a[0], a[0]]);
    // User B submits 1 video × 1 variation afterwards.
    const b = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW + 200 });

    // Simulate the runner: finish a slot, claim the next, until B's variation has completed.
    let aCompleted = 0;
    let now = NOW + 300;
    for (let turn = 0; turn < 20; turn++) {
      const done = slots.shift()!;
      await finishVariation(db, { variationId: done.id, runnerId: "r1", attempt: done.attempt, outputKey: `outputs/${done.jobId}/${done.id}`, outputSize: 1, now: now++ });
      if (done.jobId === b.jobId) break;
      aCompleted++;
      slots.push((await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: now++ }))!);
    }
    expect((await getJobRow(db, b.jobId))?.status).toBe("completed");
    // B's variation took the first freed slot: A completed only what was already running (plus, at most, one).
    expect(aCompleted).toBeLessThanOrEqual(2);
  });

  it("alternates between users with the same load, oldest job first, also within one claim batch", async () => {
    const { db } = await freshDb(server, "fair_alternate");
    const a = await seedJob(db, { sources: src, variationsPerSource: 4, createdAt: NOW });
    const b = await seedJob(db, { sources: src, variationsPerSource: 4, createdAt: NOW + 1 });
    const { claimed } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW + 10, limit: 4 });
    expect(claimed.map((c) => c.jobId)).toEqual([a.jobId, b.jobId, a.jobId, b.jobId]);
  });

  it("keeps one user's jobs in submission order", async () => {
    const { db } = await freshDb(server, "fair_same_user");
    const first = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW });
    const second = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW + 1, userId: first.userId });
    const { claimed } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW + 10, limit: 3 });
    expect(claimed.map((c) => c.jobId)).toEqual([first.jobId, first.jobId, second.jobId]);
  });
});

describe("heartbeatVariations", () => {
  it("extends leases and writes progress only for the listed variations, and reports cancel requests", async () => {
    const { db } = await freshDb(server, "hb");
    const a = await seedJob(db, { sources: src, variationsPerSource: 2 });
    const b = await seedJob(db, { sources: src, variationsPerSource: 1 });
    const { claimed } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 3 });
    expect(claimed).toHaveLength(3);
    await requestCancelRow(db, b.jobId, NOW + 500);

    const result = await heartbeatVariations(db, {
      runnerId: "r1",
      now: NOW + 1000,
      leaseMs: LEASE,
      // The second variation of job a is left out: the runner does not hold it in memory.
      variations: [{ id: a.variationIds[0]!, attempt: 1, progress: 42.5 }, { id: b.variationIds[0]!, attempt: 1 }],
    });
    expect(result.owned.map((o) => o.id).sort()).toEqual([a.variationIds[0], b.variationIds[0]].sort());
    expect(result.cancelJobIds).toEqual([b.jobId]);
    expect(await variation(db, a.variationIds[0]!)).toMatchObject({ progress: 42.5, leaseExpiresAt: NOW + 1000 + LEASE });
    expect(await variation(db, b.variationIds[0]!)).toMatchObject({ progress: 0, leaseExpiresAt: NOW + 1000 + LEASE });
    expect((await variation(db, a.variationIds[1]!)).leaseExpiresAt).toBe(NOW + LEASE);
  });

  it("leaves out variations that another runner took over, so the runner knows it lost them", async () => {
    const { db } = await freshDb(server, "hb_lost");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "slow", leaseMs: LEASE, now: NOW });
    await claimVariation(db, { runnerId: "other", leaseMs: LEASE, now: NOW + LEASE + 1 });
    const result = await heartbeatVariations(db, {
      runnerId: "slow",
      now: NOW + LEASE + 2,
      leaseMs: LEASE,
      variations: [{ id: job.variationIds[0]!, attempt: 1, progress: 99 }],
    });
    expect(result.owned).toEqual([]);
    expect(await variation(db, job.variationIds[0]!)).toMatchObject({ runnerId: "other", progress: 0 });
  });
});

describe("settling a variation", () => {
  it("records a finished output and completes the job when it was the last variation", async () => {
    const { db } = await freshDb(server, "finish");
    const job = await seedJob(db, { sources: src, variationsPerSource: 2 });
    const [v1, v2] = job.variationIds as [string, string];
    await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 2 });
    const out = (id: string) => ({ runnerId: "r1", attempt: 1, outputKey: `outputs/${job.jobId}/${id}.mp4`, outputSize: 123, now: NOW + 5 });
    expect(await finishVariation(db, { variationId: v1, ...out(v1) })).toBe(true);
    expect((await getJobRow(db, job.jobId))?.status).toBe("processing");
    expect(await finishVariation(db, { variationId: v2, ...out(v2) })).toBe(true);
    expect(await variation(db, v2)).toMatchObject({
      status: "completed",
      progress: 100,
      outputKey: `outputs/${job.jobId}/${v2}.mp4`,
      outputSize: 123,
      finishedAt: NOW + 5,
      leaseExpiresAt: null,
    });
    expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "completed", completedAt: NOW + 5 });
    expect(await getJobOutputs(db, job.jobId)).toEqual({
      status: "completed",
      outputKeys: expect.arrayContaining([`outputs/${job.jobId}/${v1}.mp4`, `outputs/${job.jobId}/${v2}.mp4`]),
    });
  });

  it("rejects a completion from a runner that lost its lease", async () => {
    const { db } = await freshDb(server, "finish_lost");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "slow", leaseMs: LEASE, now: NOW });
    await claimVariation(db, { runnerId: "other", leaseMs: LEASE, now: NOW + LEASE + 1 });
    const ok = await finishVariation(db, {
      variationId: job.variationIds[0]!,
      runnerId: "slow",
      attempt: 1,
      outputKey: "outputs/x/y.mp4",
      outputSize: 1,
      now: NOW + LEASE + 2,
    });
    expect(ok).toBe(false);
    expect(await variation(db, job.variationIds[0]!)).toMatchObject({ status: "running", runnerId: "other", outputKey: null });
  });

  it("cancels a stopped variation with its stop stage and cancels the job once nothing is active", async () => {
    const { db } = await freshDb(server, "cancel");
    const job = await seedJob(db, { sources: src, variationsPerSource: 2 });
    const [v1, v2] = job.variationIds as [string, string];
    await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 2 });
    await finishVariation(db, { variationId: v1, runnerId: "r1", attempt: 1, outputKey: "outputs/a", outputSize: 1, now: NOW + 1 });
    await requestCancelRow(db, job.jobId, NOW + 2);
    expect(await cancelVariation(db, { variationId: v2, runnerId: "other", attempt: 1, stopStage: "q", now: NOW + 3 })).toBe(false);
    expect(await cancelVariation(db, { variationId: v2, runnerId: "r1", attempt: 1, stopStage: "q", now: NOW + 3 })).toBe(true);
    expect(await variation(db, v2)).toMatchObject({ status: "cancelled", stopStage: "q", finishedAt: NOW + 3 });
    expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "cancelled", cancelledAt: NOW + 3 });
  });

  it("fails a variation with its reason and fails the job when nothing completed", async () => {
    const { db } = await freshDb(server, "fail");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    expect(await failVariation(db, { variationId: job.variationIds[0]!, runnerId: "r1", attempt: 1, error: "encoder crashed", now: NOW + 1 })).toBe(true);
    expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "failed", error: "All 1 variations failed: encoder crashed" });
  });

  it("hands a released variation back to the queue without counting the attempt", async () => {
    const { db } = await freshDb(server, "release");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    expect(await releaseVariation(db, { variationId: job.variationIds[0]!, runnerId: "r1", attempt: 1, now: NOW + 1 })).toBe(true);
    expect(await variation(db, job.variationIds[0]!)).toMatchObject({
      status: "queued",
      attempts: 0,
      leaseExpiresAt: null,
      startedAt: null,
    });
    // The refund gives the cap its attempt back; the next claim is still a new attempt number (its own output key).
    expect((await claimVariation(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + 2 }))?.attempt).toBe(2);
    expect(await variation(db, job.variationIds[0]!)).toMatchObject({ status: "running", attempts: 1, claims: 2 });
  });

  it("cancels instead of releasing when the job was asked to cancel, so the job can finish", async () => {
    const { db } = await freshDb(server, "release_cancel");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    await requestCancelRow(db, job.jobId, NOW + 1);
    await releaseVariation(db, { variationId: job.variationIds[0]!, runnerId: "r1", attempt: 1, now: NOW + 2, stopStage: "q" });
    expect(await variation(db, job.variationIds[0]!)).toMatchObject({ status: "cancelled", stopStage: "q" });
    expect((await getJobRow(db, job.jobId))?.status).toBe("cancelled");
  });

  it("requeues after a transient error with the attempt counted, and fails at the attempt cap", async () => {
    const { db } = await freshDb(server, "requeue");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    const id = job.variationIds[0]!;
    for (let i = 1; i <= 3; i++) {
      expect((await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW + i }))?.attempt).toBe(i);
      const status = await requeueVariation(db, { variationId: id, runnerId: "r1", attempt: i, error: "edge unreachable", now: NOW + i });
      expect(status).toBe(i < 3 ? "queued" : "failed");
    }
    expect(await variation(db, id)).toMatchObject({ status: "failed", error: "edge unreachable" });
    expect((await getJobRow(db, job.jobId))?.status).toBe("failed");
  });

  it("records the applied params only while the runner owns the variation", async () => {
    const { db } = await freshDb(server, "params");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    expect(await recordVariationParams(db, { variationId: job.variationIds[0]!, runnerId: "r2", attempt: 1, params: { a: 1 } })).toBe(false);
    expect(await recordVariationParams(db, { variationId: job.variationIds[0]!, runnerId: "r1", attempt: 1, params: { zoom: 1.01 } })).toBe(true);
    expect(JSON.parse((await variation(db, job.variationIds[0]!)).params!)).toEqual({ zoom: 1.01 });
  });
});

describe("failSourceVariations", () => {
  it("fails every queued or running variation of a source at once and records the reason on the source", async () => {
    const { db } = await freshDb(server, "bad_source");
    const job = await seedJob(db, { sources: [{ objectKey: "a" }, { objectKey: "b" }], variationsPerSource: 2 });
    await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    const n = await failSourceVariations(db, { sourceId: job.sourceIds[0]!, error: "not a video", now: NOW + 1 });
    expect(n).toBe(2);
    const rows = await getVariationRows(db, job.jobId);
    expect(rows.map((r) => [r.status, r.error])).toEqual([
      ["failed", "not a video"],
      ["failed", "not a video"],
      ["queued", null],
      ["queued", null],
    ]);
    const [source] = await db.select().from(sources).where(eq(sources.id, job.sourceIds[0]!));
    expect(source?.error).toBe("not a video");
    expect((await getJobRow(db, job.jobId))?.status).toBe("processing");
  });

  it("fails the job when its only source is not a video", async () => {
    const { db } = await freshDb(server, "bad_only_source");
    const job = await seedJob(db, { sources: src, variationsPerSource: 3 });
    await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW });
    await failSourceVariations(db, { sourceId: job.sourceIds[0]!, error: "not a video: invalid data", now: NOW + 1 });
    expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "failed", error: "All 3 variations failed: not a video: invalid data" });
  });
});

describe("lease recovery", () => {
  it("requeues expired leases, fails them at the attempt cap, cancels them for cancelling jobs, and names the jobs", async () => {
    const { db } = await freshDb(server, "recover");
    const plain = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 3 });
    const capped = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 2 });
    const cancelling = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 1 });
    await claimVariations(db, { runnerId: "dead", leaseMs: LEASE, now: NOW, limit: 3 });
    await db.run(sql`UPDATE variations SET attempts = 3 WHERE id = ${capped.variationIds[0]!}`);
    await requestCancelRow(db, cancelling.jobId, NOW + 1);

    expect(await recoverExpiredLeases(db, NOW + LEASE - 1)).toEqual({ jobIds: [], finalized: [] });
    const { jobIds, finalized } = await recoverExpiredLeases(db, NOW + LEASE + 1);
    // The capped one failed its only variation and the cancelling one cancelled its only one: both jobs end here.
    expect(finalized.sort()).toEqual([capped.jobId, cancelling.jobId].sort());
    expect(jobIds.sort()).toEqual([plain.jobId, capped.jobId, cancelling.jobId].sort());
    expect(await variation(db, plain.variationIds[0]!)).toMatchObject({ status: "queued", runnerId: null, attempts: 1 });
    expect((await variation(db, capped.variationIds[0]!)).status).toBe("failed");
    expect((await variation(db, cancelling.variationIds[0]!)).status).toBe("cancelled");
  });

  it("finalizes every job a reap ended in one statement, so a slow database holds a runner's tick for one round trip, not one per job", async () => {
    const { db } = await freshDb(server, "reap_finalize_once");
    const ended = [];
    for (let i = 0; i < 3; i++) ended.push(await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 10 + i }));
    await claimVariations(db, { runnerId: "dead", leaseMs: LEASE, now: NOW, limit: 3 });
    await db.run(sql`UPDATE variations SET attempts = 3`);
    const sent = await statementsOf(db, () => claimVariations(db, { runnerId: "alive", leaseMs: LEASE, now: NOW + LEASE + 1 }));
    expect(sent.filter((s) => /^\s*UPDATE jobs SET\s+status = CASE/i.test(s.sql))).toHaveLength(1);
    for (const job of ended) expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "failed", completedAt: NOW + LEASE + 1 });
  });

  it("treats variations left registered to a restarted runner id as lost right away", async () => {
    const { db } = await freshDb(server, "recover_runner");
    const job = await seedJob(db, { sources: src, variationsPerSource: 2 });
    await claimVariations(db, { runnerId: "fixed-id", leaseMs: LEASE, now: NOW, limit: 1 });
    await claimVariations(db, { runnerId: "someone-else", leaseMs: LEASE, now: NOW, limit: 1 });
    expect(await recoverRunnerVariations(db, "fixed-id", NOW + 10)).toEqual([job.jobId]);
    const rows = await getVariationRows(db, job.jobId);
    expect(rows.map((r) => [r.status, r.runnerId])).toEqual([
      ["queued", null],
      ["running", "someone-else"],
    ]);
  });
});

describe("ownership is per attempt, and settling is idempotent", () => {
  it("recognises a completion retried after its reply was lost as recorded, not as a lost lease", async () => {
    const { db } = await freshDb(server, "finish_retry");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    const v = (await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW }))!;
    const finish = (outputKey: string) =>
      finishVariation(db, { variationId: v.id, runnerId: "r1", attempt: v.attempt, outputKey, outputSize: 9, now: NOW + 5 });
    const key = `outputs/${job.jobId}/${v.id}.a1.mp4`;
    expect(await finish(key)).toBe(true);
    // The same call again, as the runner's retry after a dropped reply: the row already says so.
    expect(await finish(key)).toBe(true);
    // A different object is not this completion.
    expect(await finish(`outputs/${job.jobId}/${v.id}.a9.mp4`)).toBe(false);
    expect(await variation(db, v.id)).toMatchObject({ status: "completed", outputKey: key });
    expect((await getJobRow(db, job.jobId))?.status).toBe("completed");
  });

  it("never hands out an attempt number twice — not after a hand-back, not after a retry — so a late finisher of an earlier claim can neither settle the variation nor share the new claim's output key", async () => {
    const { db } = await freshDb(server, "attempt_unique");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1 });
    const id = job.variationIds[0]!;
    const claim = async (now: number) => (await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now }))!;
    const first = await claim(NOW);
    // A hand-back (edge trouble, shutdown) refunds the cap's attempt; the same runner claims the variation again.
    expect(await releaseVariation(db, { variationId: id, runnerId: "r1", attempt: first.attempt, now: NOW + 1 })).toBe(true);
    const second = await claim(NOW + 2);
    expect(second.attempt).not.toBe(first.attempt);
    // The first claim's task, late (its upload went out before the hand-back): nothing it does may count.
    const late = { variationId: id, runnerId: "r1", attempt: first.attempt, outputSize: 1, now: NOW + 3 };
    expect(await finishVariation(db, { ...late, outputKey: outputKey(job.jobId, id, first.attempt) })).toBe(false);
    expect(await variation(db, id)).toMatchObject({ status: "running", outputKey: null, attempts: 1 });
    // The job fails, the user retries it: a new series of attempts (the cap counts from 0), new attempt numbers.
    expect(await failVariation(db, { variationId: id, runnerId: "r1", attempt: second.attempt, error: "boom", now: NOW + 4 })).toBe(true);
    const viewer = { id: job.userId, email: `${job.userId}@test.local`, role: "user" as const };
    await retryJob(db, { jobId: job.jobId, viewer, limits: userLimitsFrom(USER_LIMIT_DEFAULTS) }, NOW + 5);
    expect(await variation(db, id)).toMatchObject({ status: "queued", attempts: 0 });
    const third = await claim(NOW + 6);
    expect(new Set([first.attempt, second.attempt, third.attempt]).size).toBe(3);
    const stale = { variationId: id, runnerId: "r1", attempt: second.attempt, outputSize: 1, now: NOW + 7 };
    expect(await finishVariation(db, { ...stale, outputKey: outputKey(job.jobId, id, second.attempt) })).toBe(false);
    expect(await finishVariation(db, { ...stale, attempt: third.attempt, outputKey: outputKey(job.jobId, id, third.attempt) })).toBe(true);
    expect(await variation(db, id)).toMatchObject({ status: "completed", attempts: 1, outputKey: outputKey(job.jobId, id, third.attempt) });
  });

  it("lets only the newest attempt move a variation, even when the same runner claimed it again", async () => {
    const { db } = await freshDb(server, "attempt_owner");
    await seedJob(db, { sources: src, variationsPerSource: 1 });
    const first = (await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW }))!;
    const second = (await claimVariation(db, { runnerId: "r1", leaseMs: LEASE, now: NOW + LEASE + 1 }))!;
    expect([first.attempt, second.attempt]).toEqual([1, 2]);
    const hb = await heartbeatVariations(db, {
      runnerId: "r1",
      now: NOW + LEASE + 2,
      leaseMs: LEASE,
      variations: [{ id: first.id, attempt: 1 }, { id: second.id, attempt: 2 }],
    });
    expect(hb.owned).toEqual([{ id: second.id, attempt: 2 }]);
    const late = { variationId: first.id, runnerId: "r1", attempt: 1, outputSize: 1, now: NOW + LEASE + 3 };
    expect(await finishVariation(db, { ...late, outputKey: "outputs/j/v.a1.mp4" })).toBe(false);
    expect(await failVariation(db, { ...late, error: "late" })).toBe(false);
    expect(await variation(db, first.id)).toMatchObject({ status: "running", attempts: 2, outputKey: null });
    expect(await finishVariation(db, { ...late, attempt: 2, outputKey: "outputs/j/v.a2.mp4" })).toBe(true);
  });

  it("hands back claims the runner does not hold: never started → queued with the attempt refunded, started → lease ends now", async () => {
    const { db } = await freshDb(server, "stranded");
    const job = await seedJob(db, { sources: src, variationsPerSource: 3 });
    // Three claims committed, but the runner only ever heard of the first (the reply of the second tick was lost)
    // — and one of the two it never heard of had been started by an earlier life of the task.
    const { claimed } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 3 });
    const [held, lostNew, lostStarted] = claimed as [typeof claimed[0], typeof claimed[0], typeof claimed[0]];
    expect(await recordVariationParams(db, { variationId: lostStarted.id, runnerId: "r1", attempt: 1, params: { zoom: 1 } })).toBe(true);

    const result = await runnerRoundTrip(db, {
      runnerId: "r1",
      now: NOW + 1000,
      leaseMs: LEASE,
      variations: [{ id: held.id, attempt: 1 }],
      inHand: [{ id: held.id, attempt: 1 }],
    });
    expect(result.stranded.map((s) => [s.id, s.status]).sort()).toEqual(
      [[lostNew.id, "queued"], [lostStarted.id, "expired"]].sort(),
    );
    expect(result.heartbeat?.owned).toEqual([{ id: held.id, attempt: 1 }]);
    expect(await variation(db, lostNew.id)).toMatchObject({ status: "queued", attempts: 0 });
    expect(await variation(db, lostStarted.id)).toMatchObject({ status: "running", attempts: 1, leaseExpiresAt: NOW + 999 });
    // Both are available to the next claim at once, without waiting for LEASE_MS.
    const next = await claimVariations(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + 1001, limit: 3 });
    // Both are new claims (attempt 2 each); only the never-started one had its cap attempt given back.
    expect(next.claimed.map((c) => [c.id, c.attempt]).sort()).toEqual([[lostNew.id, 2], [lostStarted.id, 2]].sort());
    expect(await variation(db, lostNew.id)).toMatchObject({ attempts: 1, claims: 2 });
    expect(await variation(db, lostStarted.id)).toMatchObject({ attempts: 2, claims: 2 });
    expect((await getJobRow(db, job.jobId))?.status).toBe("processing");
  });
});
