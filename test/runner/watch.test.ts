import { describe, expect, it } from "vitest";
import type { StopReason } from "../../runner/processes";
import { applyHeartbeat, heartbeatPayload, stopExpired, watchedOf, type Watched } from "../../runner/watch";

function task(id: string, jobId: string, phase = "encode", leaseExpiresAt = 10_000): Watched & { stops: StopReason[] } {
  const stops: StopReason[] = [];
  let progress: number | null = 50;
  return {
    id,
    jobId,
    phase,
    leaseExpiresAt,
    stops,
    progressForHeartbeat: () => {
      const p = progress;
      progress = null;
      return p;
    },
    stop: (r) => stops.push(r),
  };
}

describe("cancel watch", () => {
  it("stops variations of jobs asked to cancel, and only those, while extending every owned lease", () => {
    const a = task("a", "job1");
    const b = task("b", "job2");
    const c = task("c", "job1");
    const counts = applyHeartbeat([a, b, c], { owned: ["a", "b", "c"], cancelJobIds: ["job1"] }, 99_000);
    expect(counts).toEqual({ lost: 0, cancel: 2 });
    expect([a.stops, b.stops, c.stops]).toEqual([["cancel"], [], ["cancel"]]);
    expect([a, b, c].map((t) => t.leaseExpiresAt)).toEqual([99_000, 99_000, 99_000]);
  });

  it("treats a variation the database no longer gives this runner as lost, without extending its lease", () => {
    const mine = task("mine", "j");
    const taken = task("taken", "j", "encode", 5000);
    expect(applyHeartbeat([mine, taken], { owned: ["mine"], cancelJobIds: ["j"] }, 99_000)).toEqual({ lost: 1, cancel: 1 });
    expect(taken.stops).toEqual(["lost"]);
    expect(taken.leaseExpiresAt).toBe(5000);
  });

  it("stops work whose lease expired locally (the database was unreachable for a whole lease)", () => {
    const fresh = task("f", "j", "encode", 2000);
    const stale = task("s", "j", "upload", 999);
    stopExpired([fresh, stale], 1000);
    expect([fresh.stops, stale.stops]).toEqual([[], ["lost"]]);
  });

  it("leaves variations that are recording their result out of the heartbeat, and sends progress only when due", () => {
    const watched = watchedOf([task("a", "j", "encode"), task("b", "j", "settle"), task("c", "j", "finishing"), task("d", "j", "done")]);
    expect(watched.map((t) => t.id)).toEqual(["a", "c"]);
    expect(heartbeatPayload(watched, 0)).toEqual([{ id: "a", progress: 50 }, { id: "c", progress: 50 }]);
    expect(heartbeatPayload(watched, 1)).toEqual([{ id: "a", progress: null }, { id: "c", progress: null }]);
  });
});
