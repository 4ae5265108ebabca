import { describe, expect, it } from "vitest";
import { EFFECT_FAMILIES, type JobEffects } from "../../db/effects";
import { deriveParams } from "../../runner/params";

const ALL: JobEffects = { intensity: "subtle", families: [...EFFECT_FAMILIES] };
/** Brightness is eq's nearest step to the draw (runner/eq.ts): at most half a step (1.5 levels) past the range. */
const HALF_STEP = 1.5 / 255;

describe("deriveParams", () => {
  it("derives the same parameters from the same seed and effects, so a retry on another runner looks identical", () => {
    for (const effects of [undefined, ALL, { intensity: "strong", families: ["rotate", "audio"] } satisfies JobEffects]) {
      expect(deriveParams(123456, effects)).toEqual(deriveParams(123456, effects));
      expect(deriveParams(123456, effects)).not.toEqual(deriveParams(123457, effects));
    }
  });

  it("gives the default job (subtle color + zoom) exactly the parameters a seed always had", () => {
    // The recipe's values for seed 42 before effects were chosen per job: a change here changes existing looks.
    // Recipe 2 changed one on purpose: brightness is eq's nearest 1 % step as applied (drawn 0.01, applied 0.0076).
    expect(deriveParams(42)).toMatchObject({
      recipe: 2,
      zoom: 0.0056,
      offsetX: 0.484,
      offsetY: 0.606,
      brightness: 0.0076,
      contrast: 0.98,
      saturation: 1.008,
      mirror: false,
      speed: 1,
      noise: 0,
      rotate: 0,
      hue: 0,
      volumeDb: 0,
      eqGainDb: 0,
      intensity: "subtle",
      families: ["color", "zoom"],
    });
    expect(deriveParams(42, { intensity: "subtle", families: ["color", "zoom"] })).toEqual(deriveParams(42));
  });

  it("never draws a negative zero, so the parameters read back from the recorded JSON equal the drawn ones", () => {
    const all: JobEffects = { intensity: "strong", families: [...EFFECT_FAMILIES] };
    for (let seed = 1; seed <= 3000; seed++) {
      for (const effects of [undefined, all]) {
        const p = deriveParams(seed, effects);
        expect(JSON.parse(JSON.stringify(p)), `seed ${seed}`).toStrictEqual(p);
      }
    }
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
      expect(Math.abs(p.brightness)).toBeLessThanOrEqual(0.03 + HALF_STEP);
      expect(p.contrast).toBeGreaterThanOrEqual(0.97);
      expect(p.contrast).toBeLessThanOrEqual(1.03);
      expect(p.saturation).toBeGreaterThanOrEqual(0.95);
      expect(p.saturation).toBeLessThanOrEqual(1.06);
      expect(p).toMatchObject({ mirror: false, speed: 1, noise: 0, rotate: 0, hue: 0, volumeDb: 0, eqGainDb: 0 });
    }
  });

  it("spreads seeds over the range instead of clustering", () => {
    const zooms = Array.from({ length: 500 }, (_, i) => deriveParams(i + 1).zoom);
    expect(Math.min(...zooms)).toBeLessThan(0.0025);
    expect(Math.max(...zooms)).toBeGreaterThan(0.0075);
  });

  it("turns on each family only when chosen, without changing another family's values for the same seed", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const all = deriveParams(seed, ALL);
      const base = deriveParams(seed);
      expect(all).toMatchObject({ zoom: base.zoom, offsetX: base.offsetX, brightness: base.brightness, saturation: base.saturation });
      expect(all.mirror).toBe(true);
      expect(Math.abs(all.speed - 1)).toBeGreaterThanOrEqual(0.01);
      expect(Math.abs(all.speed - 1)).toBeLessThanOrEqual(0.03 + 1e-9);
      expect(all.noise).toBeGreaterThanOrEqual(1);
      expect(all.noise).toBeLessThanOrEqual(4);
      expect(Math.abs(all.rotate)).toBeGreaterThanOrEqual(0.3);
      expect(Math.abs(all.rotate)).toBeLessThanOrEqual(1);
      expect(Math.abs(all.volumeDb)).toBeGreaterThanOrEqual(0.5);
      expect(Math.abs(all.volumeDb)).toBeLessThanOrEqual(1.5);
      expect(all.eqFreq).toBeGreaterThanOrEqual(200);
      expect(all.eqFreq).toBeLessThanOrEqual(4000);
      const mirrorOnly = deriveParams(seed, { intensity: "subtle", families: ["mirror"] });
      expect(mirrorOnly).toMatchObject({ mirror: true, zoom: 0, brightness: 0, contrast: 1, saturation: 1, speed: 1, noise: 0, rotate: 0 });
    }
  });

  it("widens every range about 2× at medium and 3× at strong, around the same neutral values", () => {
    const max = (intensity: JobEffects["intensity"], pick: (p: ReturnType<typeof deriveParams>) => number) =>
      Math.max(...Array.from({ length: 400 }, (_, i) => pick(deriveParams(i + 1, { intensity, families: [...EFFECT_FAMILIES] }))));
    for (const [pick, subtleMax, slack] of [
      [(p) => p.zoom, 0.008, 1e-9],
      [(p) => Math.abs(p.brightness), 0.03, HALF_STEP],
      [(p) => Math.abs(p.rotate), 1, 1e-9],
      [(p) => Math.abs(p.speed - 1), 0.03, 1e-9],
      [(p) => p.noise, 4, 1e-9],
      [(p) => Math.abs(p.volumeDb), 1.5, 1e-9],
    ] as [(p: ReturnType<typeof deriveParams>) => number, number, number][]) {
      expect(max("subtle", pick)).toBeLessThanOrEqual(subtleMax + slack);
      expect(max("medium", pick)).toBeGreaterThan(subtleMax * 1.5);
      expect(max("medium", pick)).toBeLessThanOrEqual(subtleMax * 2 + slack);
      expect(max("strong", pick)).toBeGreaterThan(subtleMax * 2.5);
      expect(max("strong", pick)).toBeLessThanOrEqual(subtleMax * 3 + slack);
    }
    // Hue stays put at subtle (the classic look) and turns at most 8° at strong.
    expect(max("subtle", (p) => Math.abs(p.hue))).toBe(0);
    expect(max("strong", (p) => Math.abs(p.hue))).toBeLessThanOrEqual(8);
  });
});
