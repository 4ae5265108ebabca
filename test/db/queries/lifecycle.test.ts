import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listExpiredJobIds } from "../../../db/queries/lifecycle";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";
import { planOf, statementsOf } from "../../helpers/statements";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

const NOW = 1_700_000_000_000;

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
