/**
 * Effect parameters of one variation, derived only from its seed (and the runner's EFFECT_EXTRAS), so a retry on
 * another runner produces the same look. Recorded as JSON on the variation row.
 *
 * Why this recipe: the original system rotated by 0.001–0.01 rad; FFmpeg's rotate filter costs ~75 % of the encode
 * on these machines. A centred zoom of 0.2–0.8 % (crop + one bilinear scale back to the source size) moves pixels
 * about as far as that rotation does (SSIM vs the source in the same range) at a fraction of the cost.
 */
export interface EffectParams {
  recipe: 1;
  /** Fraction cropped away before scaling back to the source size (0.002–0.008 → zoom of 0.2–0.8 %). */
  zoom: number;
  /** Where the crop window sits inside the margin, 0 = left/top edge, 1 = right/bottom (0.35–0.65: near centre). */
  offsetX: number;
  offsetY: number;
  brightness: number;
  contrast: number;
  saturation: number;
  /** Extras, only when enabled by EFFECT_EXTRAS (each is off otherwise). */
  mirror: boolean;
  speed: number;
  noise: number;
}

export type EffectExtra = "mirror" | "speed" | "noise";

/** mulberry32: tiny, fast, good enough for effect jitter, and identical on every runner. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));
const between = (u: number, lo: number, hi: number) => lo + (hi - lo) * u;

export function deriveParams(seed: number, extras: readonly EffectExtra[] = []): EffectParams {
  const next = prng(seed);
  // Draw every value unconditionally so enabling an extra does not shift the base effect of the same seed.
  const p = {
    zoom: round(between(next(), 0.002, 0.008), 4),
    offsetX: round(between(next(), 0.35, 0.65), 3),
    offsetY: round(between(next(), 0.35, 0.65), 3),
    brightness: round(between(next(), -0.03, 0.03), 3),
    contrast: round(between(next(), 0.97, 1.03), 3),
    saturation: round(between(next(), 0.95, 1.06), 3),
  };
  const mirrorDraw = next();
  const speedDraw = next();
  const noiseDraw = next();
  return {
    recipe: 1,
    ...p,
    mirror: extras.includes("mirror") && mirrorDraw < 0.5,
    speed: extras.includes("speed") ? round(between(speedDraw, 0.97, 1.03), 3) : 1,
    noise: extras.includes("noise") ? Math.round(between(noiseDraw, 1, 4)) : 0,
  };
}
