import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { EFFECT_FAMILIES, type EffectIntensity } from "../../db/effects";
import { appliedBrightness, brightnessStep, eqContrastInt, eqFilter } from "../../runner/eq";
import { deriveParams } from "../../runner/params";

const run = promisify(execFile);

/** One raw yuv420p frame, 256×2: every luma level 0–255 once per row, neutral chroma. */
const W = 256;
const RAMP = Buffer.concat([Buffer.from(Array.from({ length: 2 * W }, (_, i) => i % W)), Buffer.alloc(W, 128)]);

/** The ramp through the runner's own eq filter for these parameters: the 256 output luma levels. */
async function throughEq(p: { brightness: number; contrast: number; saturation: number }): Promise<Buffer> {
  const child = run(
    "ffmpeg",
    ["-v", "error", "-nostdin", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", `${W}x2`, "-i", "pipe:0", "-vf", eqFilter(p), "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"],
    { encoding: "buffer" },
  );
  child.child.stdin!.end(RAMP);
  const { stdout } = await child;
  return stdout.subarray(0, W);
}

/** The mean luma offset over 16–235 against the neutral contrast mapping, in units of 255: what "brightness" means. */
function measuredBrightness(out: Buffer, contrast: number): number {
  let sum = 0;
  for (let src = 16; src <= 235; src++) sum += out[src]! - (contrast * (src - 127.5) + 127.5);
  return sum / 220 / 255;
}

describe("eq brightness as applied (runner/eq.ts)", () => {
  it("records the brightness FFmpeg really applies, for draws of every intensity, to a fiftieth of a level (it is recorded to 4 decimals)", async () => {
    const draws = (["subtle", "medium", "strong"] as EffectIntensity[]).flatMap((intensity) =>
      [3, 17, 42, 99, 512, 4096].map((seed) => deriveParams(seed, { intensity, families: [...EFFECT_FAMILIES] })),
    );
    draws.push({ ...draws[0]!, brightness: appliedBrightness(brightnessStep(0, 1), 1), contrast: 1 });
    for (const p of draws) {
      const out = await throughEq(p);
      // The contrast FFmpeg uses is the integer one; the neutral mapping against the drawn value differs by < 0.03 levels.
      expect(Math.abs(measuredBrightness(out, eqContrastInt(p.contrast) / 4096) - p.brightness) * 255, JSON.stringify(p)).toBeLessThan(0.02);
    }
  });

  it("gives a recorded brightness back the step that produced it (a retry encodes the same pixels)", () => {
    for (let seed = 1; seed <= 2000; seed++) {
      for (const intensity of ["subtle", "strong"] as EffectIntensity[]) {
        const p = deriveParams(seed, { intensity, families: ["color"] });
        const step = brightnessStep(p.brightness, p.contrast);
        expect(Math.abs(appliedBrightness(step, p.contrast) - p.brightness)).toBeLessThan(0.00006);
      }
    }
  });

  it("steps to the brightness nearest the draw: never more than half a step (1.5 levels) away", () => {
    for (const contrast of [0.91, 0.97, 1, 1.013, 1.09]) {
      for (let wanted = -0.09; wanted <= 0.09; wanted += 0.0007) {
        const got = appliedBrightness(brightnessStep(wanted, contrast), contrast);
        expect(Math.abs(got - wanted) * 255, `${wanted} at contrast ${contrast}`).toBeLessThanOrEqual(1.5);
      }
    }
  });
});
