import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb, type Db } from "../../../../db/client";
import { pauseJob, requestCancel } from "../../../../db/queries/jobs";
import { variations } from "../../../../db/schema";
import { startDbProxy } from "../../../helpers/db-proxy";
import { startTestLibsql, type TestLibsqlServer } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

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
