import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { cancelVariation, claimVariation, releaseVariation, requeueVariation, runnerRoundTrip } from "../../../db/queries/variations";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, getVariationRows, requestCancelRow, seedJob } from "../../helpers/seed";
import { fullScans, statementsOf } from "../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 30_000;
const src = [{ objectKey: "sources/j/s" }];

/**
 * The statements `run` sends through `db` that read a table in full (json_each, a list the statement itself
 * carries, aside), planned on `plans`: a database of their own (see fullScans).
 */
async function scansOf(db: Db, plans: Db, run: () => Promise<unknown>): Promise<Record<string, string[]>> {
  const scans: Record<string, string[]> = {};
  for (const s of await statementsOf(db, run)) {
    const found = (await fullScans(plans, s)).filter((d) => !/^SCAN json_each\b/.test(d));
    if (found.length) scans[s.sql.replace(/\s+/g, " ").trim()] = found;
  }
  return scans;
}

// Every settle of a stopped, handed-back or expired variation asks whether its job cancels work, several times per
// statement and under the database's write lock. Asked of the whole jobs table, that cost grows with every user's
// history (31 ms per settle at 10,000 finished jobs, 330 ms at 100,000): each one held up every other writer.
describe("whether a variation's job cancels work", () => {
  it("is read from that one job by every stop, release, requeue, hand-back and reap, not from every job ever finished", async () => {
    const { db } = await freshDb(server, "cancels_plan");
    const { db: plans } = await freshDb(server, "cancels_plan_explained");
    const job = await seedJob(db, { sources: src, variationsPerSource: 6, createdAt: NOW - 1000 });
    const claim = async (runnerId: string, now = NOW) => (await claimVariation(db, { runnerId, leaseMs: LEASE, now }))!;
    const own = (c: { id: string; attempt: number }, runnerId: string) => ({ variationId: c.id, runnerId, attempt: c.attempt, now: NOW + 1 });
    const [a, b, c] = [await claim("r1"), await claim("r1"), await claim("r1")];
    await claim("r2");

    expect(await scansOf(db, plans, () => cancelVariation(db, { ...own(a, "r1"), stopStage: "q" }))).toEqual({});
    expect(await scansOf(db, plans, () => releaseVariation(db, own(b, "r1")))).toEqual({});
    expect(await scansOf(db, plans, () => requeueVariation(db, { ...own(c, "r1"), error: "local trouble" }))).toEqual({});
    // r2 holds nothing in memory: its running row is stranded and handed back in its round trip.
    expect(await scansOf(db, plans, () => runnerRoundTrip(db, { runnerId: "r2", now: NOW + 2, leaseMs: LEASE, inHand: [] }))).toEqual({});
    // An expired lease of a cancelled job: reaped before the next claim.
    const lost = await claim("r3", NOW + 3);
    await requestCancelRow(db, job.jobId, NOW + 4);
    expect(await scansOf(db, plans, () => claimVariation(db, { runnerId: "r4", leaseMs: LEASE, now: NOW + LEASE + 10 }))).toEqual({});
    expect((await getVariationRows(db, job.jobId)).find((v) => v.id === lost.id)?.status).toBe("cancelled");
  });
});
