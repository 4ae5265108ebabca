import { describe, expect, it } from "vitest";
import { until } from "./until";

describe("until", () => {
  it("returns the first truthy answer", async () => {
    let n = 0;
    expect(await until("the third check", async () => (++n >= 3 ? { n } : undefined), 5_000, 1)).toEqual({ n: 3 });
  });

  it("names a check that never answers, instead of waiting on it forever", async () => {
    const started = Date.now();
    await expect(until("a hung request", () => new Promise<never>(() => {}), 50, 1)).rejects.toThrow(
      /timed out after 50 ms waiting for a hung request; the last check had not answered after \d+ ms/,
    );
    // A hung check gets the grace period, not more.
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it("tells a slow condition from a hung check, and reports the last check's own error", async () => {
    let n = 0;
    await expect(until("a refusing service", async () => { throw new Error(`refused ${++n}`); }, 100, 1)).rejects.toThrow(
      new RegExp(`^timed out after 100 ms waiting for a refusing service; last error: refused \\d+$`),
    );
    expect(String(await until("x", async () => undefined, 30, 1).catch((e: Error) => e.message))).not.toMatch(/had not answered/);
    // An error followed by clean (falsy) answers is not reported: the last check did not fail.
    let m = 0;
    await expect(until("a recovering condition", async () => { if (++m === 1) throw new Error("early"); return false; }, 100, 1)).rejects.toThrow(
      /^timed out after 100 ms waiting for a recovering condition$/,
    );
    await expect(until("a throwing probe", () => { throw new Error("sync boom"); }, 30, 1)).rejects.toThrow(
      /waiting for a throwing probe; last error: sync boom$/,
    );
  });
});
