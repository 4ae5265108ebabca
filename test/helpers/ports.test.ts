import { describe, expect, it } from "vitest";
import { ephemeralLow, freePort, freePortRun } from "./ports";

describe("test ports", () => {
  it("never hands out a port twice in one process, even to concurrent calls, while none of them is bound yet", async () => {
    const runs = await Promise.all([
      ...Array.from({ length: 40 }, () => freePortRun(3).then((base) => [base, base + 1, base + 2])),
      ...Array.from({ length: 40 }, () => freePort().then((p) => [p])),
    ]);
    const all = runs.flat();
    expect(new Set(all).size).toBe(all.length);
  });

  it("gives two workers of one run ports from disjoint slices, all below the kernel's ephemeral range", async () => {
    const saved = process.env.VITEST_POOL_ID;
    try {
      process.env.VITEST_POOL_ID = "1";
      const first = await Promise.all(Array.from({ length: 20 }, () => freePort()));
      process.env.VITEST_POOL_ID = "2";
      const second = await Promise.all(Array.from({ length: 20 }, () => freePort()));
      const [a, b] = [first, second].map((ports) => ({ low: Math.min(...ports), high: Math.max(...ports) }));
      expect(a!.high < b!.low || b!.high < a!.low).toBe(true);
      for (const p of [...first, ...second]) {
        expect(p).toBeGreaterThanOrEqual(20_000);
        expect(p).toBeLessThan(ephemeralLow());
      }
    } finally {
      if (saved === undefined) delete process.env.VITEST_POOL_ID;
      else process.env.VITEST_POOL_ID = saved;
    }
  });
});
