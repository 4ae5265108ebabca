import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../../db/client";
import { finalizeJob } from "../../../../db/queries/finalize";
import { pauseJob, resumeJob } from "../../../../db/queries/jobs";
import { listIdleActiveJobIds } from "../../../../db/queries/lifecycle";
import {
  cancelVariation,
  claimVariation,
  claimVariations,
  heartbeatVariations,
  recoverExpiredLeases,
  releaseVariation,
  requeueVariation,
  runnerRoundTrip,
} from "../../../../db/queries/variations";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../../../db/limits";
import { variations } from "../../../../db/schema";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, getJobRow, seedJob, type SeededJob } from "../../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 30_000;
const R = "r1";
const viewer = (j: SeededJob) => ({ id: j.userId, email: `${j.userId}@test.local`, role: "user" as const });
const limits = userLimitsFrom(USER_LIMIT_DEFAULTS);

async function variation(db: Db, id: string) {
  const [row] = await db.select().from(variations).where(eq(variations.id, id));
  return row!;
}

/** A job with `n` variations, the first claimed by R, then paused. */
async function pausedWithOneRunning(label: string, n = 2) {
  const { db } = await freshDb(server, label);
  const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: n, createdAt: NOW - 1000 });
  const claimed = (await claimVariation(db, { runnerId: R, leaseMs: LEASE, now: NOW }))!;
  await pauseJob(db, { jobId: j.jobId, viewer: viewer(j) }, NOW + 1);
  return { db, j, v: claimed.id };
}

describe("stopping a paused job's variations", () => {
  it("tells the runner to stop them: the heartbeat lists a paused job like a cancelled one", async () => {
    const { db, j, v } = await pausedWithOneRunning("hb");
    const hb = await heartbeatVariations(db, { runnerId: R, now: NOW + 2, leaseMs: LEASE, variations: [{ id: v, attempt: 1 }] });
    expect(hb.cancelJobIds).toEqual([j.jobId]);
  });

  it("settles the runner's stop (cancelVariation) as queued with the attempt refunded, and leaves the job paused", async () => {
    const { db, j, v } = await pausedWithOneRunning("cancel");
    expect(await cancelVariation(db, { variationId: v, runnerId: R, attempt: 1, stopStage: "q", now: NOW + 2 })).toBe(true);
    expect(await variation(db, v)).toMatchObject({ status: "queued", attempts: 0, finishedAt: null, startedAt: null, leaseExpiresAt: null, progress: 0 });
    expect(await getJobRow(db, j.jobId)).toMatchObject({ status: "paused", completedAt: null, expiresAt: null });
    // A retry of the same settle after a lost reply is success, not a lost lease.
    expect(await cancelVariation(db, { variationId: v, runnerId: R, attempt: 1, stopStage: "q", now: NOW + 3 })).toBe(true);
  });

  it("hands a released variation back to the queue (releaseVariation), never to cancelled", async () => {
    const { db, v } = await pausedWithOneRunning("release");
    expect(await releaseVariation(db, { variationId: v, runnerId: R, attempt: 1, now: NOW + 2 })).toBe(true);
    expect(await variation(db, v)).toMatchObject({ status: "queued", attempts: 0 });
  });

  it("requeues a retryable failure with the attempt counted (requeueVariation), never cancelled", async () => {
    const { db, v } = await pausedWithOneRunning("requeue");
    expect(await requeueVariation(db, { variationId: v, runnerId: R, attempt: 1, error: "edge unreachable", now: NOW + 2 })).toBe("queued");
    expect(await variation(db, v)).toMatchObject({ status: "queued", attempts: 1 });
  });

  it("hands back a stranded variation of a paused job as queued", async () => {
    const { db, v } = await pausedWithOneRunning("stranded");
    await runnerRoundTrip(db, { runnerId: R, now: NOW + 2, leaseMs: LEASE, inHand: [] });
    expect(await variation(db, v)).toMatchObject({ status: "queued", attempts: 0 });
  });

  it("puts an expired lease of a paused job back to queued (recoverExpiredLeases) and the claim's reap leaves it alone", async () => {
    const { db, j, v } = await pausedWithOneRunning("reap");
    const other = await seedJob(db, { sources: [{ objectKey: "sources/k/s" }], variationsPerSource: 1, createdAt: NOW });
    // Another runner's claim (with its reap) neither cancels nor takes the paused job's expired row.
    const { claimed } = await claimVariations(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + LEASE + 1 });
    expect(claimed.map((c) => c.jobId)).toEqual([other.jobId]);
    expect((await variation(db, v)).status).toBe("running");
    await recoverExpiredLeases(db, NOW + LEASE + 2);
    expect(await variation(db, v)).toMatchObject({ status: "queued" });
    expect((await getJobRow(db, j.jobId))!.status).toBe("paused");
  });

  it("never finalizes a paused job with queued work (finalizeJob, the cron's idle list), and no runner claims it", async () => {
    const { db, j, v } = await pausedWithOneRunning("final");
    await cancelVariation(db, { variationId: v, runnerId: R, attempt: 1, stopStage: "q", now: NOW + 2 });
    expect(await finalizeJob(db, j.jobId, NOW + 3)).toBeNull();
    expect(await listIdleActiveJobIds(db, 100)).not.toContain(j.jobId);
    expect((await getJobRow(db, j.jobId))!.status).toBe("paused");
    expect(await claimVariation(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + 4 })).toBeNull();

    await resumeJob(db, { jobId: j.jobId, viewer: viewer(j), limits }, NOW + 5);
    expect((await getJobRow(db, j.jobId))!.status).toBe("processing");
    const again = await claimVariation(db, { runnerId: "r2", leaseMs: LEASE, now: NOW + 6 });
    // A new claim (its own attempt number), and the pause cost nothing: one attempt counted against the cap.
    expect(again).toMatchObject({ id: v, attempt: 2 });
    expect(await variation(db, v)).toMatchObject({ status: "running", attempts: 1 });
  });

  it("settles a stop that lands after the resume as queued too (the job no longer cancels work)", async () => {
    const { db, j, v } = await pausedWithOneRunning("late");
    await resumeJob(db, { jobId: j.jobId, viewer: viewer(j), limits }, NOW + 2);
    await cancelVariation(db, { variationId: v, runnerId: R, attempt: 1, stopStage: "sigterm", now: NOW + 3 });
    expect(await variation(db, v)).toMatchObject({ status: "queued", attempts: 0 });
    expect((await getJobRow(db, j.jobId))!.status).toBe("processing");
  });
});
