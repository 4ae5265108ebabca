import { describe, expect, it } from "vitest";
import { deriveParams } from "../../../runner/params";
import { chartBars, paramsInWords, qualityParts } from "../../../edge/ui/shared/variation-words";

/** Numbers and units are joined by no-break spaces in the UI; compared here with plain ones. */
const sp = (s: string) => s.replace(/\u00a0/g, " ");

describe("variation rows in words", () => {
  it("names every non-neutral parameter the runner records, signed, in percent or degrees", () => {
    expect(
      sp(paramsInWords({
        zoom: 0.005, offsetX: 0.4, rotate: -0.45, mirror: true, brightness: 0.021, contrast: 0.985, saturation: 1.03, hue: 3.5,
        noise: 3, speed: 0.98, volumeDb: 1.2, eqFreq: 1250, eqGainDb: -1.5, width: 640,
      })),
    ).toBe(
      "zoom 0.5 %, rotated 0.45° anticlockwise, mirrored, brightness +2.1 %, contrast −1.5 %, saturation +3 %, hue +3.5°, " +
        "grain 3, 2 % slower, volume +1.2 dB, EQ −1.5 dB at 1.3 kHz",
    );
    // The default job (color + zoom) as the runner records it.
    expect(sp(paramsInWords(deriveParams(42)))).toMatch(/^zoom [0-9.]+ %, brightness [+−][0-9.]+ %, contrast [+−][0-9.]+ %, saturation [+−][0-9.]+ %$/);
    expect(paramsInWords({ zoom: 0, brightness: 0, contrast: 1, saturation: 1, speed: 1, mirror: false })).toBe("no changes");
    expect(paramsInWords(null)).toBe("");
    expect(paramsInWords({ zoom: "<b>5</b>" })).toBe("no changes");
  });

  it("shows only the measured figures", () => {
    expect(qualityParts({ ssim: 0.95123, psnr: 31.44, distinct: 2.349 }).map(sp)).toEqual(["SSIM 0.951", "PSNR 31.4 dB", "distinct 2.3 %"]);
    expect(qualityParts({ ssim: 0.9, psnr: 30, distinct: null }).map(sp)).toEqual(["SSIM 0.900", "PSNR 30.0 dB"]);
    expect(qualityParts({ ssim: null, psnr: null, distinct: null })).toEqual([]);
    expect(qualityParts(undefined)).toEqual([]);
  });

  it("charts measured variations: SSIM on 0–1, distinctness relative to the most distinct sibling", () => {
    const { bars, distinctScale } = chartBars([
      { index: 1, quality: { ssim: 0.9, psnr: 30, distinct: 2 } },
      { index: 2, quality: { ssim: null, psnr: null, distinct: null } },
      { index: 3, quality: { ssim: 0.8, psnr: 28, distinct: 4 } },
      { index: 4 },
    ]);
    expect(distinctScale).toBe(5);
    expect(bars.map((b) => [b.index, b.ssim, b.distinct])).toEqual([[1, 0.9, 0.4], [3, 0.8, 0.8]]);
    expect(sp(bars[0]!.label)).toBe("Variation 01: SSIM 0.900, PSNR 30.0 dB, distinct 2.0 %");
    // A source whose siblings differ more: the largest one fills the bar.
    expect(chartBars([{ index: 1, quality: { ssim: 0.5, psnr: 20, distinct: 12 } }]).distinctScale).toBe(12);
  });
});
