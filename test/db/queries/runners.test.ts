import { describe, expect, it } from "vitest";
import { heartbeatRunner, listRunners, removeRunner, upsertRunner } from "../../../db/queries/runners";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();

describe("runner registry", () => {
  it("registers a runner, refreshes its active count and last-seen time, and forgets it on removal", async () => {
    const { db } = await freshDb(server, "runners");
    const beat = { id: "host-1", host: "host", version: "0.1.0", concurrency: 2, active: 0 };
    await upsertRunner(db, beat, 1000);
    await heartbeatRunner(db, { id: "host-1", active: 2 }, 2000);
    expect(await listRunners(db)).toEqual([{ ...beat, active: 2, startedAt: 1000, lastSeenAt: 2000 }]);
    expect(await listRunners(db, 2001)).toEqual([]);

    // A restart under the same id shows the new start time rather than a second row.
    await upsertRunner(db, { ...beat, concurrency: 4 }, 5000);
    expect(await listRunners(db)).toEqual([{ ...beat, concurrency: 4, startedAt: 5000, lastSeenAt: 5000 }]);

    await removeRunner(db, "host-1");
    expect(await listRunners(db)).toEqual([]);
  });
});
