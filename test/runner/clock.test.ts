import { describe, expect, it } from "vitest";
import { ClockCheck, clockSkew, maxClockSkewMs } from "../../runner/clock";
import type { Logger } from "../../runner/log";

function logger() {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  const log: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { log, lines };
}

describe("a runner's clock against the database's", () => {
  it("is measured from the middle of the round trip, with half of it as the uncertainty", () => {
    expect(clockSkew(1000, 1200, 61_100)).toEqual({ skewMs: 60_000, uncertaintyMs: 100 });
    expect(clockSkew(1000, 1000, 500)).toEqual({ skewMs: -500, uncertaintyMs: 0 });
  });

  it("may be off by half a lease, and 5 s at least", () => {
    expect(maxClockSkewMs(30_000)).toBe(15_000);
    expect(maxClockSkewMs(2_000)).toBe(5_000);
  });

  it("stops claims while the runner is a minute ahead or behind, says so once, and allows them again when it is back in step", () => {
    const { log, lines } = logger();
    const check = new ClockCheck(30_000, log);
    check.observe(100_000, 100_020, 100_010);
    expect([check.off, check.skewMs]).toEqual([false, 0]);
    check.observe(200_000, 200_020, 140_010);
    expect([check.off, check.skewMs]).toEqual([true, -60_000]);
    check.observe(201_000, 201_020, 141_010);
    expect(lines.filter((l) => l.startsWith("error"))).toHaveLength(1);
    expect(lines[0]).toMatch(/clock is off from the database's.*"skew_ms":-60000/);
    check.observe(300_000, 300_020, 360_010);
    expect([check.off, check.skewMs]).toEqual([true, 60_000]);
    check.observe(400_000, 400_020, 400_010);
    expect([check.off, check.skewMs]).toEqual([false, 0]);
    expect(lines.at(-1)).toMatch(/^info clock in step/);
  });

  it("is not judged from a round trip too slow to tell a wrong clock from a slow answer", () => {
    const { log } = logger();
    const check = new ClockCheck(30_000, log);
    // 20 s for the answer: the database's time could be anywhere in it.
    check.observe(0, 20_000, 30_000);
    expect([check.off, check.skewMs]).toEqual([false, null]);
  });
});
