import { describe, expect, it } from "vitest";
import type { StopReason } from "../../runner/processes";
import { applyHeartbeat, heartbeatPayload, inHandOf, stopExpired, stopStalled, watchedOf, type Watched } from "../../runner/watch";

type Fake = Watched & { stops: StopReason[]; stopReason: StopReason | null };

function task(id: string, jobId: string, phase = "encode", leaseExpiresAt = 10_000, attempt = 1): Fake {
  let progress: number | null = 50;
  const t: Fake = {
    id,
    attempt,
    jobId,
    phase,
    leaseExpiresAt,
    lastProgressAt: 0,
    stopReason: null,
    stops: [],
    progressForHeartbeat: () => {
      const p = progress;
      progress = null;
      return p;
    },
    stop: (r) => {
      t.stops.push(r);
      t.stopReason ??= r;
    },
  };
  return t;
}

const owned = (...ids: string[]) => ids.map((id) => ({ id, attempt: 1 }));

describe("cancel watch", () => {
  it("stops variations of jobs asked to cancel, and only those, while extending every owned lease", () => {
    const a = task("a", "job1");
    const b = task("b", "job2");
    const c = task("c", "job1");
    const counts = applyHeartbeat([a, b, c], { owned: owned("a", "b", "c"), cancelJobIds: ["job1"] }, 99_000);
    expect(counts).toEqual({ lost: 0, cancel: 2 });
    expect([a.stops, b.stops, c.stops]).toEqual([["cancel"], [], ["cancel"]]);
    expect([a, b, c].map((t) => t.leaseExpiresAt)).toEqual([99_000, 99_000, 99_000]);
  });

  it("treats a variation the database no longer gives this runner as lost, without extending its lease", () => {
    const mine = task("mine", "j");
    const taken = task("taken", "j", "encode", 5000);
    expect(applyHeartbeat([mine, taken], { owned: owned("mine"), cancelJobIds: ["j"] }, 99_000)).toEqual({ lost: 1, cancel: 1 });
    expect(taken.stops).toEqual(["lost"]);
    expect(taken.leaseExpiresAt).toBe(5000);
  });

  it("treats an older attempt of a variation this runner claimed again as lost, and keeps the newer one", () => {
    const old = task("v", "j", "encode", 5000, 1);
    const renewed = task("v", "j", "source", 5000, 2);
    applyHeartbeat([old, renewed], { owned: [{ id: "v", attempt: 2 }], cancelJobIds: [] }, 99_000);
    expect([old.stops, renewed.stops]).toEqual([["lost"], []]);
    expect(renewed.leaseExpiresAt).toBe(99_000);
  });

  it("stops work whose lease expired locally (the database was unreachable for a whole lease)", () => {
    const fresh = task("f", "j", "encode", 2000);
    const stale = task("s", "j", "upload", 999);
    stopExpired([fresh, stale], 1000);
    expect([fresh.stops, stale.stops]).toEqual([[], ["lost"]]);
  });

  it("keeps renewing leases through verify, upload and record, but not for work already thrown away as lost", () => {
    const lost = task("e", "j", "encode");
    lost.stop("lost");
    const all = [task("a", "j", "encode"), task("b", "j", "settle"), task("c", "j", "finishing"), task("d", "j", "done"), lost];
    const watched = watchedOf(all);
    expect(watched.map((t) => t.id)).toEqual(["a", "b", "c"]);
    expect(heartbeatPayload(watched, 0)).toEqual([
      { id: "a", attempt: 1, progress: 50 },
      { id: "b", attempt: 1, progress: 50 },
      { id: "c", attempt: 1, progress: 50 },
    ]);
    expect(heartbeatPayload(watched, 1).map((p) => p.progress)).toEqual([null, null, null]);
    // Everything not done is in hand, thrown away or not: the database must not hand it back under the runner.
    expect(inHandOf(all).map((t) => t.id)).toEqual(["a", "b", "c", "e"]);
  });
});

describe("encode watchdog", () => {
  it("stops an encode whose output time has not advanced for STALL_MS, and nothing else", () => {
    const stalled = task("s", "j", "encode");
    stalled.lastProgressAt = 1000;
    const moving = task("m", "j", "encode");
    moving.lastProgressAt = 60_000;
    const uploading = task("u", "j", "finishing");
    uploading.lastProgressAt = 0;
    expect(stopStalled([stalled, moving, uploading], 62_000, 60_000)).toBe(1);
    expect([stalled.stops, moving.stops, uploading.stops]).toEqual([["stall"], [], []]);
    // Once stopping, it is not stopped again on every tick.
    expect(stopStalled([stalled], 63_000, 60_000)).toBe(0);
  });
});
