import { describe, expect, it } from "vitest";
import { ClaimGate, RefundBudget } from "../../runner/claim";

const tasks = (...phases: string[]) => phases.map((phase) => ({ phase }));

describe("claim gate", () => {
  it("claims up to CONCURRENCY encodes, not counting outputs that are only being verified or uploaded", () => {
    const gate = new ClaimGate(2);
    expect(gate.free([], 0, false)).toBe(2);
    expect(gate.free(tasks("encode"), 0, false)).toBe(1);
    expect(gate.free(tasks("encode", "source"), 0, false)).toBe(0);
    expect(gate.free(tasks("encode", "finishing"), 0, false)).toBe(1);
    expect(gate.free(tasks("finishing", "settle"), 0, false)).toBe(2);
    // At most CONCURRENCY outputs finishing at once on top of the encodes.
    expect(gate.free(tasks("finishing", "settle", "finishing"), 0, false)).toBe(1);
  });

  it("counts a finishing output that took a slot for its re-draw as encoding, and leaves a re-draw no slot a claim in flight asked for", () => {
    const gate = new ClaimGate(2);
    const redrawing = { phase: "finishing", redrawSlot: true };
    expect(gate.free([redrawing, ...tasks("encode")], 0, false)).toBe(0);
    expect(gate.encodeRoom(tasks("encode", "finishing"), 0)).toBe(1);
    expect(gate.encodeRoom(tasks("encode", "finishing"), 1)).toBe(0);
    expect(gate.encodeRoom([redrawing, ...tasks("finishing")], 0)).toBe(1);
  });

  it("leaves a re-draw waiting for a slot its slot (work in hand before new claims), first come first served", () => {
    const gate = new ClaimGate(1);
    const first = { phase: "finishing", redrawPlace: 1 };
    const second = { phase: "finishing", redrawPlace: 2 };
    // No claim takes the slot the waiting re-draws are owed.
    expect(gate.free([first, ...tasks("finishing")], 0, false)).toBe(0);
    // The one that waited longer gets it; the other does not count itself nor those behind it.
    expect(gate.encodeRoom([first, second], 0, first)).toBe(1);
    expect(gate.encodeRoom([first, second], 0, second)).toBe(0);
    expect(gate.encodeRoom([first, second, ...tasks("encode")], 0, first)).toBe(0);
  });

  it("claims nothing while shutting down", () => {
    expect(new ClaimGate(4).free([], 0, true)).toBe(0);
  });

  it("pauses claims after edge trouble with a backoff doubling from 1 s to 30 s, reset once the edge answers", () => {
    const gate = new ClaimGate(1);
    expect([1, 2, 3, 4, 5, 6, 7].map(() => gate.edgeTrouble(0))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(gate.free([], 29_999, false)).toBe(0);
    expect(gate.free([], 30_000, false)).toBe(1);
    gate.edgeOk();
    expect(gate.edgeTrouble(100_000)).toBe(1000);
  });

  it("remembers whether the last claim emptied the queue", () => {
    const gate = new ClaimGate(2);
    gate.claimed(2, 1);
    expect(gate.queueHadMore).toBe(false);
    gate.claimed(1, 1);
    expect(gate.queueHadMore).toBe(true);
  });

  it("pauses claims after a failure of the runner's own machine, so runners with room get the work", () => {
    const gate = new ClaimGate(1);
    expect([1, 2, 3].map(() => gate.localTrouble(0))).toEqual([2000, 4000, 8000]);
    expect(gate.free([], 7_999, false)).toBe(0);
    expect(gate.free([], 8_000, false)).toBe(1);
    gate.localOk();
    expect(gate.localTrouble(10_000)).toBe(2000);
  });
});

describe("RefundBudget", () => {
  it("refunds a source's edge failures only a few times, then counts them, per source", () => {
    const budget = new RefundBudget(2);
    expect([budget.take("a"), budget.take("a"), budget.take("a"), budget.take("b")]).toEqual([true, true, false, true]);
  });

  it("stays bounded in memory by forgetting the oldest sources", () => {
    const budget = new RefundBudget(1, 3);
    for (const k of ["a", "b", "c", "d"]) budget.take(k);
    // "a" was forgotten: it gets its refund again; "d" is remembered.
    expect([budget.take("a"), budget.take("d")]).toEqual([true, false]);
  });
});
