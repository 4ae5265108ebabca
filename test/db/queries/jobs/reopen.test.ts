import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "../../../../db/client";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../../../db/limits";
import { addVariations } from "../../../../db/queries/jobs";
import { variations } from "../../../../db/schema";
import { dropFirstReply, startDbProxy } from "../../../helpers/db-proxy";
import { startTestLibsql, type TestLibsqlServer } from "../../../helpers/libsql";
import { freshDb, getJobRow, getVariationRows, seedJob } from "../../../helpers/seed";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

const NOW = 1_700_000_000_000;
const limits = userLimitsFrom(USER_LIMIT_DEFAULTS);

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
});
