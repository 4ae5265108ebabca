import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../../../db/client";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../../../db/limits";
import { addVariations, pauseJob, requestCancel, resumeJob, type Reopened } from "../../../../db/queries/jobs";
import { REOPEN_KEY_REPLAY_MS } from "../../../../db/queries/jobs/reopen";
import { variations } from "../../../../db/schema";
import { dropFirstReply, startDbProxy } from "../../../helpers/db-proxy";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, getJobRow, getVariationRows, seedJob } from "../../../helpers/seed";
import { interceptStatements, sqlOf } from "../../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const limits = userLimitsFrom(USER_LIMIT_DEFAULTS);

/** A completed job of one source with two completed variations, and its owner as a viewer. */
async function completedJob(db: Awaited<ReturnType<typeof freshDb>>["db"]) {
  const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 2, createdAt: NOW - 1000, status: "completed" });
  await db.update(variations).set({ status: "completed", finishedAt: NOW - 500 }).where(eq(variations.jobId, j.jobId));
  return { j, viewer: { id: j.userId, email: `${j.userId}@test.local`, role: "user" as const } };
}

describe("a keyed reopen whose answer was lost", () => {
  it("adds more variations once when it is sent again with its key after the database's reply to it was lost", async () => {
    const { db, url } = await freshDb(server, "reopen-lost-reply");
    const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 2, createdAt: NOW - 1000, status: "completed" });
    await db.update(variations).set({ status: "completed", finishedAt: NOW - 500 }).where(eq(variations.jobId, j.jobId));
    const viewer = { id: j.userId, email: `${j.userId}@test.local`, role: "user" as const };
    // The reopen's batch (the insert of the new variations) commits; its reply never reaches the edge.
    const proxy = await startDbProxy(url, dropFirstReply((body) => body.includes("INSERT INTO variations")));
    try {
      const viaProxy = createDb(proxy.url);
      const input = { jobId: j.jobId, viewer, perSource: 3, limits, idempotencyKey: "0f8e2b6c-lost-reply" };
      await expect(addVariations(viaProxy, input, NOW)).rejects.toThrow();
      expect(proxy.dropped).toHaveLength(1);
      const again = await addVariations(viaProxy, input, NOW + 10);
      expect(again).toMatchObject({ replayed: true, job: { status: "queued", totalVariations: 5 } });
    } finally {
      await proxy.close();
    }
    expect(await getVariationRows(db, j.jobId)).toHaveLength(5);
    expect(await getJobRow(db, j.jobId)).toMatchObject({ totalVariations: 5, variationsPerVideo: 5 });
  });

  it("answers the twin whose compare-and-set lost to the other try of the same key with the job that try made: one batch", async () => {
    const { db, url } = await freshDb(server, "reopen-twins");
    const { j, viewer } = await completedJob(db);
    const input = { jobId: j.jobId, viewer, perSource: 3, limits, idempotencyKey: "twin-key-1" };
    // The other try runs its whole reopen after this one read the job and before this one's batch goes out.
    let other: Reopened | undefined;
    let done = false;
    const restore = interceptStatements(db, async (stmts) => {
      if (done || !stmts.some((s) => sqlOf(s).includes("INSERT INTO variations"))) return;
      done = true;
      other = await addVariations(createDb(url), input, NOW);
    });
    let mine: Reopened;
    try {
      mine = await addVariations(db, input, NOW + 1);
    } finally {
      restore();
    }
    expect(other).toMatchObject({ replayed: false, job: { totalVariations: 5 } });
    expect(mine).toMatchObject({ replayed: true, job: { totalVariations: 5 } });
    expect(await getVariationRows(db, j.jobId)).toHaveLength(5);
  });
});

describe("a reopen's key", () => {
  it("is forgotten by the job's next reopen without a key, and after 24 hours: the same key is then a new request", async () => {
    const { db } = await freshDb(server, "reopen-key-forgotten");
    const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 2, createdAt: NOW - 1000 });
    const viewer = { id: j.userId, email: `${j.userId}@test.local`, role: "user" as const };
    const resume = (key: string | null, at: number) => resumeJob(db, { jobId: j.jobId, viewer, limits, idempotencyKey: key }, at);

    await pauseJob(db, { jobId: j.jobId, viewer }, NOW);
    expect(await resume("nightly", NOW + 1)).toMatchObject({ replayed: false, job: { status: "queued" } });
    await pauseJob(db, { jobId: j.jobId, viewer }, NOW + 2);
    // Within the day, the key answers for the resume it made (the job as it is now: paused again).
    expect(await resume("nightly", NOW + 3)).toMatchObject({ replayed: true, job: { status: "paused" } });
    // After it, the same key resumes again.
    expect(await resume("nightly", NOW + 1 + REOPEN_KEY_REPLAY_MS)).toMatchObject({ replayed: false, job: { status: "queued" } });

    await pauseJob(db, { jobId: j.jobId, viewer }, NOW + 2 + REOPEN_KEY_REPLAY_MS);
    await resume(null, NOW + 3 + REOPEN_KEY_REPLAY_MS);
    // The unkeyed resume replaced it: a late repeat of the key is a new request, refused while the job runs.
    await expect(resume("nightly", NOW + 4 + REOPEN_KEY_REPLAY_MS)).rejects.toMatchObject({ code: "job_active" });
  });
});

describe("a resume racing a cancel", () => {
  it("leaves a paused job cancelled when another tab cancels it after the resume read it, and queues nothing past the owner's limits", async () => {
    const { db, url } = await freshDb(server, "resume-vs-cancel");
    const few = { ...limits, queuedVariations: 3 };
    const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 3, createdAt: NOW - 1000 });
    const viewer = { id: j.userId, email: `${j.userId}@test.local`, role: "user" as const };
    await pauseJob(db, { jobId: j.jobId, viewer }, NOW);
    // Between the resume's read (paused) and its batch: the other tab cancels (nothing runs, so the job is cancelled
    // at once) and the owner starts another job that fills the queued-variations limit.
    let cancelled = false;
    const restore = interceptStatements(db, async (stmts) => {
      if (cancelled || !stmts.some((s) => /update "jobs" set "status"/.test(sqlOf(s)))) return;
      cancelled = true;
      const other = createDb(url);
      expect(await requestCancel(other, { jobId: j.jobId, viewer }, NOW + 1)).toMatchObject({ job: { status: "cancelled" } });
      await seedJob(other, { userId: j.userId, sources: [{ objectKey: "sources/k/s" }], variationsPerSource: 3, createdAt: NOW + 1 });
    });
    try {
      await expect(resumeJob(db, { jobId: j.jobId, viewer, limits: few }, NOW + 2)).rejects.toMatchObject({ code: "not_resumable" });
    } finally {
      restore();
    }
    expect(cancelled).toBe(true);
    expect(await getJobRow(db, j.jobId)).toMatchObject({ status: "cancelled", cancelledAt: NOW + 1 });
    expect((await getVariationRows(db, j.jobId)).map((v) => v.status)).toEqual(["cancelled", "cancelled", "cancelled"]);
  });
});
