import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../../../db/client";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../../../db/limits";
import { addVariations, listJobs } from "../../../../db/queries/jobs";
import { variations } from "../../../../db/schema";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";
import { interceptStatements, sqlOf } from "../../../helpers/statements";

const server = useTestLibsql();
const NOW = 1_700_000_000_000;

describe("listJobs", () => {
  it("shows each job's status, total and counts from one moment, even when more variations are added while the list is read", async () => {
    const { db, url } = await freshDb(server, "list-one-moment");
    const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 2, createdAt: NOW - 1000, status: "completed" });
    await db.update(variations).set({ status: "completed", progress: 100, finishedAt: NOW - 500 }).where(eq(variations.jobId, j.jobId));
    const viewer = { id: j.userId, email: `${j.userId}@test.local`, role: "user" as const };
    // The owner's other tab asks for 3 more as soon as the list has read anything of the job.
    let added = false;
    const restore = interceptStatements(db, async (stmts) => {
      if (added || !stmts.some((s) => /from "(sources|variations)"/.test(sqlOf(s)))) return;
      added = true;
      await addVariations(createDb(url), { jobId: j.jobId, viewer, perSource: 3, limits: userLimitsFrom(USER_LIMIT_DEFAULTS) }, NOW);
    });
    let listed;
    try {
      listed = (await listJobs(db, { viewer, limit: 10 }, NOW + 1)).jobs[0]!;
    } finally {
      restore();
    }
    expect(added).toBe(true);
    const counted = listed.completedVariations + listed.failedVariations + listed.cancelledVariations;
    // Either before the more (completed, 2 of 2) or after it (queued, 5 with 3 to go): never a mix.
    expect([
      { status: "completed", total: 2, finished: 2 },
      { status: "queued", total: 5, finished: 2 },
      { status: "processing", total: 5, finished: 2 },
    ]).toContainEqual({ status: listed.status, total: listed.totalVariations, finished: counted });
    expect(listed.progress).toBe(listed.status === "completed" ? 100 : 40);
    // The file's own status and counts are of the same moment as the job's.
    expect(listed.files.map((f) => f.status)).toEqual([listed.status === "completed" ? "completed" : "processing"]);
  });
});
