import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../../db/client";
import { estimateQueue, listJobs, ownWorkOf, readQueueSnapshot } from "../../../../db/queries/jobs";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, getJobRow, seedJob } from "../../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const src = [{ objectKey: "sources/j/s" }];

async function runnerOnline(db: Db, id: string, concurrency: number, lastSeenAt = NOW) {
  await db.run(sql`INSERT INTO runners (id, host, version, concurrency, active, started_at, last_seen_at)
    VALUES (${id}, 'h', 't', ${concurrency}, 0, ${NOW - 60_000}, ${lastSeenAt})`);
}

/** A finished job whose variations each took `encodeMs`, finishing just now: the throughput sample. */
async function recentEncodes(db: Db, n: number, encodeMs: number) {
  const job = await seedJob(db, { sources: src, variationsPerSource: n, status: "completed", createdAt: NOW - 60_000 });
  await db.run(sql`UPDATE variations SET status = 'completed', progress = 100, started_at = ${NOW - 5000 - encodeMs},
    finished_at = ${NOW - 5000} WHERE job_id = ${job.jobId}`);
}

async function rows(db: Db, ids: string[]) {
  return Promise.all(ids.map(async (id) => (await getJobRow(db, id))!));
}

describe("estimateQueue", () => {
  it("counts the work runners start before a queued job's first variation, taking turns between users as the claim does", async () => {
    const { db } = await freshDb(server, "eta_turns");
    await runnerOnline(db, "r1", 2);
    await recentEncodes(db, 2, 10_000);
    const a1 = await seedJob(db, { sources: src, variationsPerSource: 4, createdAt: NOW - 1000 });
    const a2 = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW - 500, userId: a1.userId });
    const b1 = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 100 });

    const est = await estimateQueue(db, await rows(db, [a1.jobId, a2.jobId, b1.jobId]), NOW);
    // A's second job waits for A's first (4) and B's single variation (B's turn comes before).
    expect(est.get(a2.jobId)?.queuePosition).toBe(5);
    // B's job waits for one turn of A (A holds the older job), not for A's 6 queued variations.
    expect(est.get(b1.jobId)?.queuePosition).toBe(1);
    expect(est.get(a1.jobId)?.queuePosition).toBe(0);
    // 2 slots, 10 s per encode → 0.2 variations/s. B: one A turn + its own variation = 2 → 10 s.
    expect(est.get(b1.jobId)?.etaSeconds).toBe(10);
    // A1: its 4 + B's 1 interleaved = 5 → 25 s.
    expect(est.get(a1.jobId)?.etaSeconds).toBe(25);
  });

  it("gives a processing job no queue position and an ETA from the work left in its running encodes", async () => {
    const { db } = await freshDb(server, "eta_running");
    await runnerOnline(db, "r1", 1);
    await recentEncodes(db, 1, 20_000);
    const job = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW - 1000 });
    await db.run(sql`UPDATE jobs SET status = 'processing' WHERE id = ${job.jobId}`);
    await db.run(sql`UPDATE variations SET status = 'running', progress = 50, runner_id = 'r1', attempts = 1,
      lease_expires_at = ${NOW + 30_000} WHERE id = ${job.variationIds[0]}`);
    const est = (await estimateQueue(db, await rows(db, [job.jobId]), NOW)).get(job.jobId)!;
    expect(est.queuePosition).toBeNull();
    // 1.5 variations left at 0.05/s → 30 s.
    expect(est.etaSeconds).toBe(30);
  });

  it("gives no ETA while no runner is online or nothing completed recently, and nothing for finished jobs", async () => {
    const { db } = await freshDb(server, "eta_unknown");
    const queued = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 1000 });
    const done = await seedJob(db, { sources: src, variationsPerSource: 1, status: "completed", createdAt: NOW - 2000 });
    await runnerOnline(db, "gone", 4, NOW - 10 * 60_000);
    await recentEncodes(db, 1, 5000);
    let est = await estimateQueue(db, await rows(db, [queued.jobId, done.jobId]), NOW);
    expect(est.get(queued.jobId)).toEqual({ queuePosition: 0, etaSeconds: null });
    expect(est.get(done.jobId)).toEqual({ queuePosition: null, etaSeconds: null });

    await runnerOnline(db, "r1", 1);
    await db.run(sql`UPDATE variations SET finished_at = ${NOW - 3 * 3600_000} WHERE status = 'completed'`);
    est = await estimateQueue(db, await rows(db, [queued.jobId]), NOW);
    expect(est.get(queued.jobId)?.etaSeconds).toBeNull();
  });

  it("takes each job's own work from the read of the job, not from an older shared snapshot", async () => {
    const { db } = await freshDb(server, "eta_own");
    await runnerOnline(db, "r1", 2);
    await recentEncodes(db, 2, 10_000);
    await seedJob(db, { sources: src, variationsPerSource: 4, createdAt: NOW - 1000 });
    const before = await readQueueSnapshot(db, NOW);
    const stale = { snapshot: async () => before };
    // After the snapshot: another user's job is created.
    const b1 = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW - 100 });
    const [b1Row] = await rows(db, [b1.jobId]);
    // The snapshot has never seen B's job: without its own work it would be due at once (0 s).
    expect((await estimateQueue(db, [b1Row!], NOW, stale)).get(b1.jobId)?.etaSeconds).toBe(0);
    // With it: one A turn per B variation (2) + its own 2, at 0.2 variations/s → 20 s, as a fresh read says.
    const b1Own = new Map([[b1.jobId, await ownOf(db, b1.jobId)]]);
    expect((await estimateQueue(db, [b1Row!], NOW, { ...stale, own: b1Own })).get(b1.jobId)?.etaSeconds).toBe(20);
    expect(await estimateQueue(db, [b1Row!], NOW, { own: b1Own })).toEqual(await estimateQueue(db, [b1Row!], NOW));
  });

  it("takes a job that stopped taking work since the snapshot out of it: paused, cancelling, or its owner disabled", async () => {
    const stops = {
      paused: (db: Db, id: string) => db.run(sql`UPDATE jobs SET status = 'paused' WHERE id = ${id}`),
      cancelling: (db: Db, id: string) => db.run(sql`UPDATE jobs SET status = 'cancelling', cancel_requested_at = ${NOW - 50} WHERE id = ${id}`),
      "owner disabled": (db: Db, id: string) =>
        db.run(sql`UPDATE users SET disabled_at = ${NOW - 50} WHERE id = (SELECT user_id FROM jobs WHERE id = ${id})`),
    };
    for (const [name, stop] of Object.entries(stops)) {
      const { db } = await freshDb(server, `eta_stop_${name.replace(" ", "_")}`);
      await runnerOnline(db, "r1", 2);
      await recentEncodes(db, 2, 10_000);
      const a1 = await seedJob(db, { sources: src, variationsPerSource: 4, createdAt: NOW - 1000 });
      const a2 = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 900, userId: a1.userId });
      const b1 = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 800 });
      const before = await readQueueSnapshot(db, NOW);
      await stop(db, name === "owner disabled" ? b1.jobId : a1.jobId);
      // An admin's page (every user's jobs): the estimates from the old snapshot plus each job's own read equal a fresh read's.
      const all = await rows(db, [a1.jobId, a2.jobId, b1.jobId]);
      const own = new Map(await Promise.all(all.map(async (j) => [j.id, await ownOf(db, j.id)] as const)));
      const fresh = await estimateQueue(db, all, NOW);
      const fromStale = await estimateQueue(db, all, NOW, { snapshot: async () => before, own });
      expect(fromStale, name).toEqual(fresh);
      expect(await estimateQueue(db, all, NOW, { snapshot: async () => before }), `${name}: the stale snapshot alone differs`).not.toEqual(fresh);
    }
  });

  it("lists a user's jobs with estimates as current as a fresh read, from a stale snapshot", async () => {
    const { db } = await freshDb(server, "eta_list");
    await runnerOnline(db, "r1", 2);
    await recentEncodes(db, 2, 10_000);
    const a1 = await seedJob(db, { sources: src, variationsPerSource: 4, createdAt: NOW - 1000 });
    const before = await readQueueSnapshot(db, NOW);
    const a2 = await seedJob(db, { sources: src, variationsPerSource: 3, createdAt: NOW - 900, userId: a1.userId });
    await db.run(sql`UPDATE jobs SET status = 'processing' WHERE id = ${a1.jobId}`);
    await db.run(sql`UPDATE variations SET status = 'running', progress = 40, runner_id = 'r1', attempts = 1,
      lease_expires_at = ${NOW + 30_000} WHERE id = ${a1.variationIds[0]}`);
    const viewer = { id: a1.userId, email: "", role: "user" as const };
    const listed = await listJobs(db, { viewer, limit: 10 }, NOW, async () => before);
    const fresh = await listJobs(db, { viewer, limit: 10 }, NOW);
    const pick = (p: typeof listed) => p.jobs.map((j) => [j.id, j.queuePosition, j.etaSeconds]);
    expect(pick(listed)).toEqual(pick(fresh));
    expect(pick(fresh)).toContainEqual([a2.jobId, 3, expect.any(Number)]);
  });
});

async function ownOf(db: Db, jobId: string) {
  return ownWorkOf(await db.all<{ status: string; progress: number }>(sql`SELECT status, progress FROM variations WHERE job_id = ${jobId}`));
}
