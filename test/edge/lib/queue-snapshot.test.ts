import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { QUEUE_SNAPSHOT_MAX_AGE_MS, sharedQueueSnapshots } from "../../../edge/lib/queue-snapshot";

const T0 = 1_700_000_000_000;
const db = {} as Db;

describe("sharedQueueSnapshots", () => {
  it("serves every poll inside QUEUE_SNAPSHOT_MAX_AGE_MS from one read of every user's pending work", async () => {
    let reads = 0;
    const one = sharedQueueSnapshots(async () => ({ pending: [], meanMs: ++reads, slots: 1 }))("http://db");
    for (let dt = 0; dt < QUEUE_SNAPSHOT_MAX_AGE_MS; dt += 100) expect((await one(db, T0 + dt)).meanMs).toBe(1);
    expect(reads).toBe(1);
  });

  it("reads again once the snapshot is older than that, and keeps one per database", async () => {
    const reads: number[] = [];
    const source = sharedQueueSnapshots(async (_db, now) => {
      reads.push(now);
      return { pending: [], meanMs: 0, slots: 1 };
    });
    await source("http://db-one")(db, T0);
    await source("http://db-one")(db, T0 + QUEUE_SNAPSHOT_MAX_AGE_MS - 1);
    expect(reads).toEqual([T0]);
    await source("http://db-two")(db, T0 + 1);
    expect(reads).toEqual([T0, T0 + 1]);
    await source("http://db-one")(db, T0 + QUEUE_SNAPSHOT_MAX_AGE_MS + 1);
    expect(reads).toEqual([T0, T0 + 1, T0 + QUEUE_SNAPSHOT_MAX_AGE_MS + 1]);
  });
});
