import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb, type Db } from "../../../../db/client";
import { cancelJobs, pauseJob, requestCancel } from "../../../../db/queries/jobs";
import { variations } from "../../../../db/schema";
import { startDbProxy } from "../../../helpers/db-proxy";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, getJobRow, seedJob } from "../../../helpers/seed";
import { statementsOf } from "../../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
/** About what a runner records per completed variation (5 sampled frames). */
const FINGERPRINT = "A".repeat(5_800);

/** A job of 100 variations, 99 completed with their fingerprints, one queued. */
async function bigFinishedJob(db: Db) {
  const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 100, createdAt: NOW - 1000 });
  for (const id of j.variationIds.slice(1)) {
    await db.update(variations).set({ status: "completed", fingerprint: FINGERPRINT, finishedAt: NOW - 500 }).where(eq(variations.id, id));
  }
  return { j, viewer: { id: j.userId, email: `${j.userId}@test.local`, role: "user" as const } };
}

describe("stopping a job reads what it shows, not what runners compare", () => {
  it("cancel and pause of a job with 100 fingerprinted variations do not carry the fingerprints back", async () => {
    const { db, url } = await freshDb(server, "stop-reply");
    const paused = await bigFinishedJob(db);
    const cancelled = await bigFinishedJob(db);
    const proxy = await startDbProxy(url);
    try {
      const viaProxy = createDb(proxy.url);
      const p = await pauseJob(viaProxy, { jobId: paused.j.jobId, viewer: paused.viewer }, NOW);
      expect(p.job.status).toBe("paused");
      const c = await requestCancel(viaProxy, { jobId: cancelled.j.jobId, viewer: cancelled.viewer }, NOW);
      expect(c.kind).toBe("requested");
      // 99 fingerprints are ~570 KB; the rows without them are a fraction of that.
      expect(Math.max(...proxy.replyBytes)).toBeLessThan(200_000);
    } finally {
      await proxy.close();
    }
  });
});

describe("bulk cancel", () => {
  it("costs one read for ids that are unknown, another user's, finished, already cancelled or repeated, and cancels each of the caller's active jobs once", async () => {
    const { db } = await freshDb(server, "bulk-cancel-reads");
    const mine = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1, createdAt: NOW - 1000 });
    const viewer = { id: mine.userId, email: `${mine.userId}@test.local`, role: "user" as const };
    const done = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1, createdAt: NOW - 900, userId: mine.userId, status: "completed" });
    const theirs = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1, createdAt: NOW - 800 });
    const cancelled = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1, createdAt: NOW - 700, userId: mine.userId, status: "cancelled" });
    const madeUp = Array.from({ length: 150 }, (_, i) => `nosuchjob${String(i).padStart(7, "0")}`);
    const ids = [...madeUp, theirs.jobId, done.jobId, cancelled.jobId, mine.jobId, mine.jobId];
    let results: Awaited<ReturnType<typeof cancelJobs>> = [];
    const statements = await statementsOf(db, async () => {
      results = await cancelJobs(db, { viewer, ids }, NOW);
    });
    expect(results.map((r) => r.id)).toEqual(ids);
    expect(results.slice(0, 151).every((r) => r.error === "not_found")).toBe(true);
    expect(results[151]).toEqual({ id: done.jobId, status: "completed", previousStatus: "completed", error: "not_cancellable" });
    expect(results[152]).toEqual({ id: cancelled.jobId, status: "cancelled", previousStatus: "cancelled" });
    expect(results[153]).toEqual({ id: mine.jobId, status: "cancelled", previousStatus: "queued" });
    expect(results[154]).toEqual(results[153]);
    expect((await getJobRow(db, theirs.jobId))?.status).toBe("queued");
    // The read, then the caller's one active job's cancel batch (and nothing for the other 154 ids).
    expect(statements.filter((s) => /^\s*update\b/i.test(s.sql))).toHaveLength(2);
  });
});

