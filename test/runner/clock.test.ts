import { describe, expect, it } from "vitest";
import { ClockCheck, clockSkew, maxClockSkewMs } from "../../runner/clock";
import type { Logger } from "../../runner/log";

function logger() {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  const log: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { log, lines };
}

/** One answer of the edge: sent at `t`, answered 20 ms later, the edge's clock `skew` ms from the runner's. */
const answer = (check: ClockCheck, t: number, skew: number) => check.observe(t, t + 20, t + 10 + skew);

describe("a runner's clock against the edge's", () => {
  it("is measured from the middle of the request, with half of it as the uncertainty", () => {
    expect(clockSkew(1000, 1200, 61_100)).toEqual({ skewMs: 60_000, uncertaintyMs: 100 });
    expect(clockSkew(1000, 1000, 500)).toEqual({ skewMs: -500, uncertaintyMs: 0 });
  });

  it("may be off by half a lease, and 5 s at least", () => {
    expect(maxClockSkewMs(30_000)).toBe(15_000);
    expect(maxClockSkewMs(2_000)).toBe(5_000);
  });

  it("stops claims while the runner is a minute ahead or behind, says so every 30 s at most, and allows them again in step", () => {
    const { log, lines } = logger();
    const check = new ClockCheck(30_000, log);
    answer(check, 100_000, 0);
    expect([check.off, check.skewMs]).toEqual([false, 0]);
    answer(check, 200_000, -60_000);
    expect([check.off, check.skewMs]).toEqual([true, -60_000]);
    answer(check, 210_000, -60_000);
    expect(lines.filter((l) => l.startsWith("error"))).toHaveLength(1);
    expect(lines[0]).toMatch(/clock is off from the edge's.*"skew_ms":-60000/);
    answer(check, 300_000, 60_000);
    expect([check.off, check.skewMs]).toEqual([true, 60_000]);
    expect(lines.filter((l) => l.startsWith("error"))).toHaveLength(2);
    answer(check, 400_000, 0);
    expect([check.off, check.skewMs]).toEqual([false, 0]);
    expect(lines.at(-1)).toMatch(/^info clock in step/);
  });

  it("does not flip with jitter while a drifting clock sits near the limit: in step again only well within it", () => {
    const { log, lines } = logger();
    const check = new ClockCheck(30_000, log);
    answer(check, 0, 14_000);
    expect(check.off).toBe(false);
    answer(check, 1000, 15_500);
    expect(check.off).toBe(true);
    // Back under the limit by a little, then a little over, then under again: still off, one error said.
    for (const [i, skew] of [14_500, 15_200, 13_000].entries()) answer(check, 2000 + i * 1000, skew);
    expect(check.off).toBe(true);
    expect(lines.filter((l) => l.startsWith("error"))).toHaveLength(1);
    answer(check, 9000, 11_000);
    expect(check.off).toBe(false);
  });

  it("is not judged from an answer too slow to tell a wrong clock from a slow edge", () => {
    const { log } = logger();
    const check = new ClockCheck(30_000, log);
    // 20 s for the answer: the edge's time could be anywhere in it.
    check.observe(0, 20_000, 30_000);
    expect([check.off, check.skewMs]).toEqual([false, null]);
  });
});
