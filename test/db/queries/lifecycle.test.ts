import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { EXPIRED_WHILE_QUEUED, failStaleQueuedJobs, listExpiredJobIds } from "../../../db/queries/lifecycle";
import { jobs } from "../../../db/schema";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, getJobRow, getVariationRows, seedJob } from "../../helpers/seed";
import { fullScans, planOf, statementsOf } from "../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;

// The expiry lists a batch again and again until its backlog is gone (edge/lifecycle/expire-jobs.ts). Taken from the
// status index (nothing runs ANALYZE), each listing read every finished job still retained, not only expired ones.
describe("listExpiredJobIds", () => {
  it("reads the jobs past their expiry from the expiry index, not every finished job", async () => {
    const { db } = await freshDb(server, "expired_plan");
    const [stmt] = await statementsOf(db, () => listExpiredJobIds(db, NOW, 50));
    const plan = await planOf(db, stmt!);
    expect(plan.filter((d) => /\bjobs\b/.test(d)), plan.join("\n")).toEqual([expect.stringMatching(/^SEARCH jobs USING INDEX jobs_expires_idx \((expires_at>\? AND )?expires_at<\?\)$/)]);
  });
});

// Every minute, under the write lock: the variations were failed by job_id IN (every job that ever expired while
// queued and is still retained), a list that only grows with history, to reach the few jobs failed this minute.
describe("failStaleQueuedJobs", () => {
  it("fails the variations of the jobs it fails this minute and reads no other job: an earlier tick's failures stay untouched", async () => {
    const { db } = await freshDb(server, "stale_queued");
    const stale = await seedJob(db, { sources: [{ objectKey: "sources/a/s" }], variationsPerSource: 2, createdAt: NOW - 25 * HOUR });
    const fresh = await seedJob(db, { sources: [{ objectKey: "sources/b/s" }], createdAt: NOW - HOUR, userId: stale.userId });
    // Failed by an earlier tick, with a queued row left under it: this minute's statement has no business there.
    const earlier = await seedJob(db, { sources: [{ objectKey: "sources/c/s" }], status: "failed", createdAt: NOW - 50 * HOUR, userId: stale.userId });
    await db.update(jobs).set({ error: EXPIRED_WHILE_QUEUED, completedAt: NOW - 26 * HOUR }).where(eq(jobs.id, earlier.jobId));

    expect(await failStaleQueuedJobs(db, NOW - 24 * HOUR, NOW)).toEqual([stale.jobId]);
    expect(await getJobRow(db, stale.jobId)).toMatchObject({ status: "failed", error: EXPIRED_WHILE_QUEUED, completedAt: NOW });
    expect((await getVariationRows(db, stale.jobId)).map((v) => [v.status, v.error, v.finishedAt])).toEqual([
      ["failed", EXPIRED_WHILE_QUEUED, NOW],
      ["failed", EXPIRED_WHILE_QUEUED, NOW],
    ]);
    expect((await getVariationRows(db, fresh.jobId)).map((v) => v.status)).toEqual(["queued"]);
    expect((await getVariationRows(db, earlier.jobId)).map((v) => v.status)).toEqual(["queued"]);
  });

  it("reads no table in full", async () => {
    const { db } = await freshDb(server, "stale_queued_plan");
    const { db: plans } = await freshDb(server, "stale_queued_plan_explained");
    for (const s of await statementsOf(db, () => failStaleQueuedJobs(db, NOW - 24 * HOUR, NOW))) expect(await fullScans(plans, s), s.sql).toEqual([]);
  });
});
