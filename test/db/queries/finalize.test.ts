import { eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { finalizeJob } from "../../../db/queries/finalize";
import { jobs, variations, type VariationStatus } from "../../../db/schema";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, getJobRow, seedJob } from "../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const RETENTION = 3_600_000;

/** A processing job whose variations are in the given states (errors on failed ones). */
async function jobWith(db: Db, states: VariationStatus[], opts: { cancelRequested?: boolean } = {}) {
  const seeded = await seedJob(db, {
    sources: [{ objectKey: "sources/x/y" }],
    variationsPerSource: states.length,
    status: opts.cancelRequested ? "cancelling" : "processing",
    retentionMs: RETENTION,
  });
  for (const [i, status] of states.entries()) {
    await db
      .update(variations)
      .set({ status, error: status === "failed" ? `boom ${i + 1}` : null, finishedAt: NOW - 100 + i })
      .where(eq(variations.id, seeded.variationIds[i]!));
  }
  if (opts.cancelRequested) await db.update(jobs).set({ cancelRequestedAt: NOW - 500 }).where(eq(jobs.id, seeded.jobId));
  return seeded;
}

describe("finalizeJob", () => {
  it("completes a job whose variations all completed, even when a cancel was requested (completed wins)", async () => {
    const { db } = await freshDb(server, "fin_wins");
    const { jobId } = await jobWith(db, ["completed", "completed"], { cancelRequested: true });
    expect(await finalizeJob(db, jobId, NOW)).toBe("completed");
    const job = await getJobRow(db, jobId);
    expect(job).toMatchObject({ status: "completed", completedAt: NOW, expiresAt: NOW + RETENTION, cancelledAt: null });
  });

  it("cancels a job with a cancel request once nothing is active, keeping its completed variations", async () => {
    const { db } = await freshDb(server, "fin_cancel");
    const { jobId, variationIds } = await jobWith(db, ["completed", "cancelled", "cancelled"], { cancelRequested: true });
    expect(await finalizeJob(db, jobId, NOW)).toBe("cancelled");
    expect(await getJobRow(db, jobId)).toMatchObject({ status: "cancelled", cancelledAt: NOW, completedAt: NOW, expiresAt: NOW + RETENTION });
    const done = await db.select().from(variations).where(inArray(variations.id, variationIds));
    expect(done.filter((v) => v.status === "completed")).toHaveLength(1);
  });

  it("fails a job none of whose variations completed, with the first variation error in the message", async () => {
    const { db } = await freshDb(server, "fin_fail");
    const { jobId } = await jobWith(db, ["failed", "failed"]);
    expect(await finalizeJob(db, jobId, NOW)).toBe("failed");
    const job = await getJobRow(db, jobId);
    expect(job?.status).toBe("failed");
    expect(job?.error).toBe("All 2 variations failed: boom 1");
  });

  it("completes a job with some failed variations, leaving the failures to be counted", async () => {
    const { db } = await freshDb(server, "fin_mixed");
    const { jobId } = await jobWith(db, ["completed", "failed"]);
    expect(await finalizeJob(db, jobId, NOW)).toBe("completed");
    expect(await getJobRow(db, jobId)).toMatchObject({ status: "completed", error: null });
  });

  it("does nothing while a variation is still queued or running", async () => {
    const { db } = await freshDb(server, "fin_active");
    const a = await jobWith(db, ["completed", "running"]);
    const b = await jobWith(db, ["completed", "queued"], { cancelRequested: true });
    expect(await finalizeJob(db, a.jobId, NOW)).toBeNull();
    expect(await finalizeJob(db, b.jobId, NOW)).toBeNull();
    expect((await getJobRow(db, a.jobId))?.status).toBe("processing");
    expect((await getJobRow(db, b.jobId))?.status).toBe("cancelling");
  });

  it("does not touch a job that is already finished", async () => {
    const { db } = await freshDb(server, "fin_done");
    const { jobId } = await jobWith(db, ["completed"]);
    expect(await finalizeJob(db, jobId, NOW)).toBe("completed");
    expect(await finalizeJob(db, jobId, NOW + 5000)).toBeNull();
    expect((await getJobRow(db, jobId))?.completedAt).toBe(NOW);
  });
});
