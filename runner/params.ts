import { appliedBrightness, brightnessStep } from "./eq";
import { DEFAULT_EFFECTS, INTENSITY_SCALE, type EffectFamily, type EffectIntensity, type JobEffects } from "../db/effects";

/**
 * Effect parameters of one variation, derived only from its seed and its job's effects (db/effects.ts), so a retry
 * on another runner produces the same look. Recorded as JSON on the variation row (and in the ZIP's manifest).
 *
 * Why this recipe: the original system rotated by 0.001–0.01 rad; FFmpeg's rotate filter costs ~75 % of the encode
 * on these machines. A centred zoom of 0.2–0.8 % (crop + one bilinear scale back to the source size) moves pixels
 * about as far as that rotation does (SSIM vs the source in the same range) at a fraction of the cost. Rotation is
 * therefore a family of its own, applied only to jobs that ask for it.
 *
 * A family that is not chosen gets its neutral value (zoom 0, brightness 0, contrast 1, speed 1, …), and
 * buildEncodeArgs adds no filter for a neutral value, so an unchosen family costs nothing.
 */
export interface EffectParams {
  /**
   * 2: brightness is recorded as applied by eq's fast path (runner/eq.ts: 1 % steps, the draw rounded to the
   * nearest) and the zoom may scale with zscale. 1 (earlier outputs): brightness as drawn, exact lookup table.
   */
  recipe: 2;
  intensity: EffectIntensity;
  families: EffectFamily[];
  /** Fraction cropped away before scaling back to the source size (subtle 0.002–0.008 → zoom of 0.2–0.8 %). */
  zoom: number;
  /** Where the crop window sits inside the margin, 0 = left/top edge, 1 = right/bottom (0.35–0.65: near centre). */
  offsetX: number;
  offsetY: number;
  brightness: number;
  contrast: number;
  saturation: number;
  /** Hue turn in degrees (color at medium/strong only: subtle keeps the classic look). */
  hue: number;
  /** Rotation in degrees, positive = clockwise; the crop then grows just enough to hide the corners. */
  rotate: number;
  mirror: boolean;
  /** Playback rate (1 = unchanged); audio tempo follows. */
  speed: number;
  /** Grain strength for FFmpeg's noise filter (0 = off). */
  noise: number;
  /** Audio: overall gain and one peaking-EQ band (0 dB = off). */
  volumeDb: number;
  eqFreq: number;
  eqGainDb: number;
}

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

// "+ 0": a small negative draw rounds to -0, which JSON records as 0; the parameters must equal what is recorded.
const round = (x: number, digits: number) => Number(x.toFixed(digits)) + 0;
const between = (u: number, lo: number, hi: number) => lo + (hi - lo) * u;
/** A range around `centre`, widened k times; k = 1 is computed exactly as before intensities existed. */
const scaled = (u: number, lo: number, hi: number, centre: number, k: number) =>
  k === 1 ? between(u, lo, hi) : centre + (between(u, lo, hi) - centre) * k;
/** A signed magnitude in [lo, hi] × k from one draw: below 0.5 negative, above positive. */
const signed = (u: number, lo: number, hi: number, k: number) =>
  (u < 0.5 ? -1 : 1) * between(Math.abs(2 * u - 1), lo, hi) * k;

/**
 * Families whose drawn parameters can change what the distinctness fingerprint sees (runner/quality.ts: five frames at
 * fixed fractions of the duration, 24 × 24 in colour). Two cannot: a mirror flips every variation alike, and audio is
 * not in the picture. A job of only those gets the same picture from every seed, so a distinctness re-draw could only
 * repeat the encode. (A speed change does count: it moves which source frame lands on each sample, which shows on
 * moving footage; so does grain strength.)
 */
export const PICTURE_DRAW_FAMILIES: readonly EffectFamily[] = ["color", "zoom", "rotate", "speed", "noise"];

/** Whether a new seed can change a variation's fingerprint (see PICTURE_DRAW_FAMILIES). */
export const seedMovesPicture = (effects: JobEffects) => effects.families.some((f) => PICTURE_DRAW_FAMILIES.includes(f));

/** The parameters of one variation: same seed and effects → same parameters, on any runner. */
export function deriveParams(seed: number, effects: JobEffects = DEFAULT_EFFECTS): EffectParams {
  const next = prng(seed);
  const on = (f: EffectFamily) => effects.families.includes(f);
  const k = INTENSITY_SCALE[effects.intensity];
  // Draw every value unconditionally and in a fixed order, so choosing a family never shifts another family's
  // values for the same seed (and the default job keeps the exact parameters it had before effects were chosen).
  const d = {
    zoom: next(),
    offsetX: next(),
    offsetY: next(),
    brightness: next(),
    contrast: next(),
    saturation: next(),
    mirror: next(),
    speed: next(),
    noise: next(),
    rotate: next(),
    hue: next(),
    volume: next(),
    eqFreq: next(),
    eqGain: next(),
  };
  const color = on("color");
  const audio = on("audio");
  const contrast = color ? round(scaled(d.contrast, 0.97, 1.03, 1, k), 3) : 1;
  // The brightness eq really applies (nearest 1 % step), not the draw: what is recorded is what the viewer sees.
  const brightness = color ? round(appliedBrightness(brightnessStep(scaled(d.brightness, -0.03, 0.03, 0, k), contrast), contrast), 4) : 0;
  return {
    recipe: 2,
    intensity: effects.intensity,
    families: [...effects.families],
    zoom: on("zoom") ? round(scaled(d.zoom, 0.002, 0.008, 0, k), 4) : 0,
    offsetX: on("zoom") ? round(between(d.offsetX, 0.35, 0.65), 3) : 0.5,
    offsetY: on("zoom") ? round(between(d.offsetY, 0.35, 0.65), 3) : 0.5,
    brightness,
    contrast,
    saturation: color ? round(scaled(d.saturation, 0.95, 1.06, 1, k), 3) : 1,
    hue: color && k > 1 ? round(signed(d.hue, 2, 4, k - 1), 2) : 0,
    rotate: on("rotate") ? round(signed(d.rotate, 0.3, 1, k), 3) : 0,
    // Its draw only keeps the sequence: a chosen mirror flips every variation.
    mirror: on("mirror"),
    speed: on("speed") ? round(1 + signed(d.speed, 0.01, 0.03, k), 3) : 1,
    noise: on("noise") ? Math.round(between(d.noise, 1, 4) * k) : 0,
    volumeDb: audio ? round(signed(d.volume, 0.5, 1.5, k), 2) : 0,
    eqFreq: audio ? Math.round(200 * 20 ** d.eqFreq) : 0,
    eqGainDb: audio ? round(signed(d.eqGain, 1, 2, k), 2) : 0,
  };
}
