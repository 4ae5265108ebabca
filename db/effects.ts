import { z } from "zod";

/**
 * The effects a job asks for: a contract both sides use. The edge validates `effects` on POST /api/jobs with
 * `EffectsSchema` and shows the names and explanations in the UI; the job row stores the normalized JSON; every
 * runner reads it back with the claim and derives each variation's parameters from seed + effects
 * (runner/params.ts), so the same job looks the same on any runner.
 */

/** In recipe order (also the order a job's families are stored in). */
export const EFFECT_FAMILIES = ["color", "zoom", "rotate", "mirror", "speed", "noise", "audio"] as const;
export type EffectFamily = (typeof EFFECT_FAMILIES)[number];

export const EFFECT_INTENSITIES = ["subtle", "medium", "strong"] as const;
export type EffectIntensity = (typeof EFFECT_INTENSITIES)[number];

/** How far each parameter may move from neutral, as a multiple of the subtle range (today's look). */
export const INTENSITY_SCALE: Record<EffectIntensity, number> = { subtle: 1, medium: 2, strong: 3 };

/** One line per family, for the upload page and the docs. */
export const EFFECT_FAMILY_INFO: Record<EffectFamily, string> = {
  color: "Brightness, contrast and saturation jitter (hue turns too at medium and strong)",
  zoom: "Zooms in slightly (crop + scale back) with a small off-centre shift",
  rotate: "Turns the picture by a small angle; a zoom just large enough hides the corners",
  mirror: "Flips the picture left to right",
  speed: "Plays 1–3 % faster or slower (× intensity); the audio keeps in sync",
  noise: "Adds light film grain",
  audio: "Changes the volume a little and boosts or cuts one frequency band",
};

export const EFFECT_INTENSITY_INFO: Record<EffectIntensity, string> = {
  subtle: "Barely visible: the classic look",
  medium: "About twice as far from the original",
  strong: "About three times as far; still watchable",
};

/** What a job asked for: families are distinct and in EFFECT_FAMILIES order once stored. */
export interface JobEffects {
  intensity: EffectIntensity;
  families: EffectFamily[];
}

/** Today's look: what a job gets when it names no effects. */
export const DEFAULT_EFFECTS: JobEffects = { intensity: "subtle", families: ["color", "zoom"] };

/** The stored default (the jobs.effects column default is this exact text). */
export const DEFAULT_EFFECTS_JSON = JSON.stringify(DEFAULT_EFFECTS);

/**
 * Request shape of `effects`. Unknown keys are refused (a typo must not silently give the default look); a missing
 * intensity or family list takes the default's.
 */
export const EffectsSchema = z.strictObject({
  intensity: z
    .enum(EFFECT_INTENSITIES, { error: `must be one of ${EFFECT_INTENSITIES.join(", ")}` })
    .default(DEFAULT_EFFECTS.intensity),
  families: z
    .array(z.enum(EFFECT_FAMILIES, { error: `unknown effect family; use ${EFFECT_FAMILIES.join(", ")}` }))
    .min(1, "choose at least one effect family")
    .max(EFFECT_FAMILIES.length * 2)
    .default(DEFAULT_EFFECTS.families),
});

/** Distinct families in recipe order, so equal choices store (and derive) identically however they were sent. */
export function normalizeEffects(e: { intensity: EffectIntensity; families: readonly EffectFamily[] }): JobEffects {
  return { intensity: e.intensity, families: EFFECT_FAMILIES.filter((f) => e.families.includes(f)) };
}

/**
 * The effects stored on a job row. A row written before effects existed (or anything unreadable, which the edge
 * never stores) means the default look, which is what those jobs were created with.
 */
export function parseStoredEffects(json: string | null | undefined): JobEffects {
  if (!json) return { ...DEFAULT_EFFECTS, families: [...DEFAULT_EFFECTS.families] };
  try {
    const parsed = EffectsSchema.safeParse(JSON.parse(json));
    if (parsed.success) return normalizeEffects(parsed.data);
  } catch {
    // fall through to the default
  }
  return { ...DEFAULT_EFFECTS, families: [...DEFAULT_EFFECTS.families] };
}
