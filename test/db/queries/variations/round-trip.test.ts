import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../../db/client";
import { claimVariations, recordVariationParams, runnerRoundTrip } from "../../../../db/queries/variations";
import { variations } from "../../../../db/schema";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 30_000;

async function variation(db: Db, id: string) {
  const [row] = await db.select().from(variations).where(eq(variations.id, id));
  return row!;
}

describe("a runner's round trip that reaches the database late", () => {
  // Ticks never overlap in the runner, but a round trip whose reply the runner gave up on (a timeout, a broken
  // connection) may still be executed by the server after the runner's next one: the earlier `now` and in-hand list
  // then arrive after the later claim. Called directly here in that order, with their own `now`s.
  it("hands back neither work claimed by a later round trip nor moves a lease the later heartbeat extended back", async () => {
    const { db } = await freshDb(server, "round_trip_late");
    await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 4, createdAt: NOW - 10_000 });
    // Before either round trip: X is in hand; Z was claimed too, but its reply was lost (never in hand).
    const { claimed: early } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 2 });
    const [x, z] = early as [(typeof early)[0], (typeof early)[0]];
    const inHandEarly = [{ id: x.id, attempt: x.attempt }];

    // The later round trip (sent second, executed first): heartbeat for X, two claims.
    const later = await runnerRoundTrip(db, {
      runnerId: "r1",
      now: NOW + 2000,
      leaseMs: LEASE,
      variations: inHandEarly,
      inHand: inHandEarly,
      claim: 2,
    });
    expect(later.stranded.map((s) => s.id)).toEqual([z.id]);
    const [fresh, started] = later.claim!.claimed as [(typeof early)[0], (typeof early)[0]];
    // One of the later claims has begun its encode (params recorded): the stranded rule would expire its lease.
    expect(await recordVariationParams(db, { variationId: started.id, runnerId: "r1", attempt: started.attempt, params: { zoom: 1 } })).toBe(true);

    // The earlier round trip now executes: it knew X only.
    const late = await runnerRoundTrip(db, {
      runnerId: "r1",
      now: NOW + 1000,
      leaseMs: LEASE,
      variations: inHandEarly,
      inHand: inHandEarly,
    });
    expect(late.stranded).toEqual([]);
    for (const c of [fresh, started]) {
      expect(await variation(db, c.id)).toMatchObject({ status: "running", runnerId: "r1", attempts: 1, claims: c.attempt, leaseExpiresAt: NOW + 2000 + LEASE });
    }
    expect(await variation(db, x.id)).toMatchObject({ status: "running", runnerId: "r1", leaseExpiresAt: NOW + 2000 + LEASE });
  });

  it("still hands back what this runner claimed at or before the round trip's own time and does not hold", async () => {
    const { db } = await freshDb(server, "round_trip_stranded");
    await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 2, createdAt: NOW - 10_000 });
    const { claimed } = await claimVariations(db, { runnerId: "r1", leaseMs: LEASE, now: NOW, limit: 2 });
    const [lost, same] = claimed as [(typeof claimed)[0], (typeof claimed)[0]];
    // Claimed in the very millisecond of the round trip (an earlier tick's, whose reply was lost) counts as before it.
    await db.update(variations).set({ startedAt: NOW + 1000 }).where(eq(variations.id, same.id));
    const result = await runnerRoundTrip(db, { runnerId: "r1", now: NOW + 1000, leaseMs: LEASE, inHand: [] });
    expect(result.stranded.map((s) => [s.id, s.status]).sort()).toEqual([[lost.id, "queued"], [same.id, "queued"]].sort());
    expect(await variation(db, lost.id)).toMatchObject({ status: "queued", attempts: 0, runnerId: null });
  });
});
