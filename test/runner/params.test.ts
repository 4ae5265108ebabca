import { describe, expect, it } from "vitest";
import { deriveParams } from "../../runner/params";

describe("deriveParams", () => {
  it("derives the same parameters from the same seed, so a retry on another runner looks identical", () => {
    expect(deriveParams(123456)).toEqual(deriveParams(123456));
    expect(deriveParams(123456)).not.toEqual(deriveParams(123457));
  });

  it("keeps every value inside the subtle ranges over many seeds", () => {
    for (let seed = 1; seed < 3000; seed += 7) {
      const p = deriveParams(seed);
      expect(p.zoom).toBeGreaterThanOrEqual(0.002);
      expect(p.zoom).toBeLessThanOrEqual(0.008);
      for (const o of [p.offsetX, p.offsetY]) {
        expect(o).toBeGreaterThanOrEqual(0.35);
        expect(o).toBeLessThanOrEqual(0.65);
      }
      expect(Math.abs(p.brightness)).toBeLessThanOrEqual(0.03);
      expect(p.contrast).toBeGreaterThanOrEqual(0.97);
      expect(p.contrast).toBeLessThanOrEqual(1.03);
      expect(p.saturation).toBeGreaterThanOrEqual(0.95);
      expect(p.saturation).toBeLessThanOrEqual(1.06);
      expect(p).toMatchObject({ mirror: false, speed: 1, noise: 0 });
    }
  });

  it("spreads seeds over the range instead of clustering", () => {
    const zooms = Array.from({ length: 500 }, (_, i) => deriveParams(i + 1).zoom);
    expect(Math.min(...zooms)).toBeLessThan(0.0025);
    expect(Math.max(...zooms)).toBeGreaterThan(0.0075);
  });

  it("turns on mirror, speed and noise only when enabled, without changing the base look of a seed", () => {
    const base = deriveParams(99);
    const seen = { mirror: 0, speed: 0, noise: 0 };
    for (let seed = 1; seed <= 200; seed++) {
      const p = deriveParams(seed, ["mirror", "speed", "noise"]);
      const b = deriveParams(seed);
      expect({ ...p, mirror: false, speed: 1, noise: 0 }).toEqual(b);
      if (p.mirror) seen.mirror++;
      if (p.speed !== 1) seen.speed++;
      expect(p.speed).toBeGreaterThanOrEqual(0.97);
      expect(p.speed).toBeLessThanOrEqual(1.03);
      if (p.noise > 0) seen.noise++;
    }
    expect(seen.mirror).toBeGreaterThan(50);
    expect(seen.mirror).toBeLessThan(150);
    expect(seen.speed).toBeGreaterThan(150);
    expect(seen.noise).toBe(200);
    expect(deriveParams(99, ["noise"])).toMatchObject({ ...base, noise: expect.any(Number) });
  });
});
