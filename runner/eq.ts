/**
 * FFmpeg's `eq` on its fast path, modelled exactly, so a variation records the brightness the viewer really gets.
 *
 * Why not the exact lookup table (gamma ≠ 1): it costs about a tenth of a 1080×1920 ultrafast encode (a C table
 * lookup per pixel), while the fast path (SIMD) is nearly free. The fast path maps a luma pixel to
 * `floor(src × C / 4096) + B` with `C = trunc(contrast × 4096)` and an integer `B` that only moves in 1 % steps of
 * brightness (`(int)(100 × brightness + 100)`, truncated: −0.2 % and −1 % come out the same), 2–3 levels apart and
 * biased about one level dark. So the draw picks the step nearest to the wanted brightness and records the
 * brightness that step really applies: the mean offset over the limited luma range 16–235 against a neutral
 * `contrast × (src − 127.5) + 127.5`, in units of 255. Chroma (saturation) always took the fast path.
 */

const LO = 16;
const HI = 235;

/** FFmpeg's integer contrast (`(int)(contrast * 256 * 16)`, evaluated in the same double arithmetic). */
export function eqContrastInt(contrast: number): number {
  return Math.trunc(contrast * 256 * 16);
}

/** The integer offset the fast path adds for brightness step `step` (0–200; 100 = no brightness). */
function eqOffset(step: number, c: number): number {
  return Math.floor((step * 511) / 200) - 128 - Math.floor(c / 32);
}

/**
 * Mean of what eq outputs for offset `b` minus the neutral contrast mapping, over 16–235 (units of levels). With
 * `clip` the output is clipped to 0–255 as FFmpeg does; without, the figure is `b` plus a bias independent of `b`.
 */
function meanOffset(c: number, b: number, clip: boolean): number {
  let sum = 0;
  for (let src = LO; src <= HI; src++) {
    const raw = Math.floor((src * c) / 4096) + b;
    sum += (clip ? Math.min(255, Math.max(0, raw)) : raw) - ((c / 4096) * (src - 127.5) + 127.5);
  }
  return sum / (HI - LO + 1);
}

/** The brightness (units of 255) that step `step` really applies with this contrast. */
export function appliedBrightness(step: number, contrast: number): number {
  const c = eqContrastInt(contrast);
  return meanOffset(c, eqOffset(step, c), true) / 255;
}

/**
 * The brightness step whose applied brightness is nearest to `brightness` with this contrast (1–199, inside eq's
 * −1…1 option range). Found without clipping first (cheap, within a step), then among its neighbours with it, so
 * the step of a recorded `appliedBrightness` is found again.
 */
export function brightnessStep(brightness: number, contrast: number): number {
  const c = eqContrastInt(contrast);
  const bias = meanOffset(c, 0, false);
  let guess = 100;
  let guessErr = Infinity;
  for (let step = 1; step <= 199; step++) {
    const err = Math.abs((eqOffset(step, c) + bias) / 255 - brightness);
    if (err < guessErr) [guess, guessErr] = [step, err];
  }
  let best = guess;
  let bestErr = Infinity;
  for (let step = Math.max(1, guess - 3); step <= Math.min(199, guess + 3); step++) {
    const err = Math.abs(appliedBrightness(step, contrast) - brightness);
    if (err < bestErr) [best, bestErr] = [step, err];
  }
  return best;
}

/**
 * The `brightness` option value that makes eq take `step`: half a step above it, so FFmpeg's truncation of
 * `100 × brightness + 100` lands on `step` whatever the last bit of the decimal's binary value.
 */
export function brightnessOption(step: number): string {
  return ((step - 99.5) / 100).toFixed(4);
}

/** The eq filter of a colour draw: brightness named by its step (fast path: no gamma, so no lookup table). */
export function eqFilter(p: { brightness: number; contrast: number; saturation: number }): string {
  return `eq=brightness=${brightnessOption(brightnessStep(p.brightness, p.contrast))}:contrast=${p.contrast}:saturation=${p.saturation}`;
}
