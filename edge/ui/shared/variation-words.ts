/**
 * A variation's recorded parameters and quality figures in words, for the job page (DOM-free, unit-tested). The
 * parameters are what runner/params.ts records (EffectParams plus the crop geometry); only values that differ
 * from neutral are named, in the order the effects are applied.
 */

export interface QualityFigures {
  ssim: number | null;
  psnr: number | null;
  distinct: number | null;
}

const MINUS = "\u2212";
/** Between a number and its unit: "3.3 % faster" never breaks into "3.3" / "% faster". */
const NB = "\u00a0";

/** 0.0204 → "2", 0.015 → "1.5" (at most one decimal, no trailing ".0"). */
function num(x: number, digits = 1): string {
  const s = Math.abs(x).toFixed(digits);
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/** Signed, with a real minus sign: "+2", "−1.5". */
function signed(x: number, digits = 1): string {
  return `${x < 0 ? MINUS : "+"}${num(x, digits)}`;
}

const n = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** "zoom 0.5 %, brightness +2 %, contrast −1 %, mirrored, 2 % faster"; "no changes" when nothing differs. */
export function paramsInWords(params: unknown): string {
  if (!params || typeof params !== "object") return "";
  const p = params as Record<string, unknown>;
  const words: string[] = [];
  const zoom = n(p.zoom);
  if (zoom) words.push(`zoom ${num(zoom * 100)}${NB}%`);
  const rotate = n(p.rotate);
  if (rotate) words.push(`rotated ${num(rotate, 2)}° ${rotate > 0 ? "clockwise" : "anticlockwise"}`);
  if (p.mirror === true) words.push("mirrored");
  const brightness = n(p.brightness);
  if (brightness) words.push(`brightness ${signed(brightness * 100)}${NB}%`);
  const contrast = n(p.contrast);
  if (contrast !== null && contrast !== 1) words.push(`contrast ${signed((contrast - 1) * 100)}${NB}%`);
  const saturation = n(p.saturation);
  if (saturation !== null && saturation !== 1) words.push(`saturation ${signed((saturation - 1) * 100)}${NB}%`);
  const hue = n(p.hue);
  if (hue) words.push(`hue ${signed(hue)}°`);
  const noise = n(p.noise);
  if (noise) words.push(`grain ${num(noise, 0)}`);
  const speed = n(p.speed);
  if (speed !== null && speed !== 1) words.push(`${num(Math.abs(speed - 1) * 100)}${NB}% ${speed > 1 ? "faster" : "slower"}`);
  const volume = n(p.volumeDb);
  if (volume) words.push(`volume ${signed(volume)}${NB}dB`);
  const eqGain = n(p.eqGainDb);
  const eqFreq = n(p.eqFreq);
  if (eqGain && eqFreq) words.push(`EQ ${signed(eqGain)}${NB}dB at ${eqFreq >= 1000 ? `${num(eqFreq / 1000)}${NB}kHz` : `${num(eqFreq, 0)}${NB}Hz`}`);
  return words.length ? words.join(", ") : "no changes";
}

/** ["SSIM 0.951", "PSNR 31.4 dB", "distinct 2.3 %"]: only the measured figures. */
export function qualityParts(q: QualityFigures | null | undefined): string[] {
  if (!q) return [];
  const parts: string[] = [];
  if (q.ssim !== null) parts.push(`SSIM ${q.ssim.toFixed(3)}`);
  if (q.psnr !== null) parts.push(`PSNR ${q.psnr.toFixed(1)}${NB}dB`);
  if (q.distinct !== null) parts.push(`distinct ${q.distinct.toFixed(1)}${NB}%`);
  return parts;
}

export interface ChartBar {
  index: number;
  /** 0..1 bar heights. */
  ssim: number;
  distinct: number;
  label: string;
}

/** The distinctness a full bar stands for, at least: subtle siblings differ by a few percent. */
export const DISTINCT_CHART_MIN = 5;

/**
 * Bars of the per-source chart: SSIM on its own 0–1 scale, distinctness on 0–`distinctScale` % (DISTINCT_CHART_MIN,
 * or the largest figure of the source when that is larger). Measured variations only.
 */
export function chartBars(variations: readonly { index: number; quality?: QualityFigures | null }[]): { bars: ChartBar[]; distinctScale: number } {
  const measured = variations.filter((v) => v.quality && v.quality.ssim !== null);
  const maxDistinct = Math.max(DISTINCT_CHART_MIN, ...measured.map((v) => v.quality!.distinct ?? 0));
  const bars = measured.map((v) => {
    const q = v.quality!;
    return {
      index: v.index,
      ssim: Math.max(0, Math.min(1, q.ssim ?? 0)),
      distinct: maxDistinct > 0 ? Math.max(0, (q.distinct ?? 0) / maxDistinct) : 0,
      label: `Variation ${String(v.index).padStart(2, "0")}: ${qualityParts(q).join(", ")}`,
    };
  });
  return { bars, distinctScale: maxDistinct };
}
