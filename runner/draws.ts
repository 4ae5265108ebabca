import type { Db } from "../db/client";
import type { JobEffects } from "../db/effects";
import { isSeedTaken, listSiblingFingerprints, lowerDistinctness, redrawVariation, type ClaimedVariation, type Ownership } from "../db/queries/variations";
import type { RunnerConfig } from "./config";
import { retryDb } from "./db-retry";
import { pictureMs, type EncodePlan } from "./ffmpeg";
import { errorMessage, type Logger } from "./log";
import { deriveParams, seedMovesPicture, type EffectParams } from "./params";
import type { StopReason } from "./processes";
import { closestDistance, measureQuality, type QualityFigures } from "./quality";
import type { SampledSource } from "./samples";
import type { AcquiredSource } from "./sources";

/** One encode of a variation: the first draw, or a re-draw with a new seed (runner/quality.ts decides). */
export interface Draw {
  seed: number;
  /** The parameters as recorded on the row (with the geometry). */
  recorded: Record<string, unknown>;
  file: string;
  thumbnail: string;
  quality: QualityFigures | null;
  /** Distance to the closest sibling completed when it was measured (null: none, or not measured). */
  distinct: number | null;
  k: number;
}

/** What measuring and re-drawing need from the runner (a WorkContext has it all). */
export interface DrawContext {
  config: Pick<RunnerConfig, "FFMPEG_PATH" | "QUALITY_SSIM_FLOOR" | "QUALITY_DISTINCT_FLOOR" | "MAX_REDRAWS">;
  db: Db;
  log: Logger;
}

/** The variation in hand whose draws these are: a VariationTask. */
export interface Drawing {
  readonly id: string;
  readonly own: Ownership;
  readonly claim: Pick<ClaimedVariation, "sourceId">;
  readonly stopReason: StopReason | null;
  /** Aborted when the task ends: nothing it started may outlive it. */
  readonly signal: AbortSignal;
}

export const thumbnailFile = (file: string) => file.replace(/\.mp4$/, ".jpg");
export const sampleSource = (s: AcquiredSource): SampledSource => ({ path: s.path, durationMs: pictureMs(s.media), fps: s.media.fps });

/** The reason recorded when no draw passed: the last problem, the seeds tried and the one kept. */
export const keptReason = (problem: string, draws: readonly Draw[], kept: Draw) =>
  `${problem}; re-draw limit reached: kept the best of ${draws.length} draws (seeds ${draws.map((d) => d.seed).join(", ")}; kept ${kept.seed})`;

/**
 * The draw to keep when none passed both floors: the smallest shortfall below the floors (relative to each floor),
 * then the higher SSIM, then the earlier draw. A draw that passes has no shortfall, so it always wins.
 */
export function bestDraw<D extends { quality: { ssim: number } | null; distinct: number | null; k: number }>(
  draws: readonly D[],
  floors: { QUALITY_SSIM_FLOOR: number; QUALITY_DISTINCT_FLOOR: number },
): D {
  const shortfall = (d: D) =>
    !d.quality
      ? Infinity
      : Math.max(0, floors.QUALITY_SSIM_FLOOR - d.quality.ssim) / (floors.QUALITY_SSIM_FLOOR || 1) +
        (d.distinct === null ? 0 : Math.max(0, floors.QUALITY_DISTINCT_FLOOR - d.distinct) / (floors.QUALITY_DISTINCT_FLOOR || 1));
  return [...draws].sort((a, b) => shortfall(a) - shortfall(b) || (b.quality?.ssim ?? 0) - (a.quality?.ssim ?? 0) || a.k - b.k)[0]!;
}

/**
 * Why this draw should be re-drawn (for the user, no paths), or null when it passes both floors — or when no seed can
 * move this job's picture (seedMovesPicture: mirror/audio only): every re-draw would give the same picture, so the same
 * SSIM and fingerprint, and would only spend an encode slot, up to MAX_REDRAWS times per variation, that other jobs
 * wait for.
 */
export function drawProblem(
  config: Pick<RunnerConfig, "QUALITY_SSIM_FLOOR" | "QUALITY_DISTINCT_FLOOR">,
  d: Pick<Draw, "quality" | "distinct">,
  effects: JobEffects,
): string | null {
  const { QUALITY_SSIM_FLOOR: ssimFloor, QUALITY_DISTINCT_FLOOR: distinctFloor } = config;
  if (!d.quality || !seedMovesPicture(effects)) return null;
  if (d.quality.ssim < ssimFloor) return `SSIM ${d.quality.ssim.toFixed(3)} below the floor ${ssimFloor}`;
  if (d.distinct !== null && d.distinct < distinctFloor) {
    return `distinctness ${d.distinct.toFixed(2)} % below the floor ${distinctFloor} % (too close to a sibling)`;
  }
  return null;
}

/**
 * Quality of one draw and its distinctness from the siblings completed so far (best effort: a failed measurement
 * leaves the figures null and never fails the variation).
 */
export async function measure(
  ctx: DrawContext,
  task: Drawing,
  seed: number,
  recorded: Record<string, unknown>,
  params: EffectParams,
  plan: EncodePlan,
  file: string,
  source: AcquiredSource,
  k: number,
): Promise<Draw> {
  const { config, db, log } = ctx;
  const draw: Draw = { seed, recorded, file, quality: null, distinct: null, thumbnail: thumbnailFile(file), k };
  try {
    draw.quality = await measureQuality(
      config.FFMPEG_PATH,
      { source: sampleSource(source), speed: params.speed, output: file, thumbnail: draw.thumbnail, params, geometry: plan.geometry },
      task.signal,
    );
    // A database that cannot list the siblings now costs the figure, not the encode (compareSiblings and
    // later siblings still fill it in).
    const siblings = await retryDb(() => listSiblingFingerprints(db, { sourceId: task.claim.sourceId, exceptId: task.id }), { attempts: 3 }).catch(
      (err: unknown) => (log.warn("could not read sibling fingerprints", { variation: task.id, error: errorMessage(err) }), null),
    );
    draw.distinct = siblings ? closestDistance(draw.quality.fingerprint, siblings.map((x) => x.fingerprint)) : null;
    log.info("variation measured", { variation: task.id, seed, ssim: draw.quality.ssim, psnr: draw.quality.psnr, distinct: draw.distinct });
  } catch (err) {
    if (!task.stopReason) log.warn("quality measurement failed", { variation: task.id, error: errorMessage(err) });
    draw.quality = null;
  }
  return draw;
}

/**
 * A new seed for this variation, recorded with its parameters (CAS on ownership and the re-draw bound). Seeds are
 * unique in the job: a clash with a sibling's seed throws in the database, and another seed is drawn.
 */
export async function redraw(
  ctx: DrawContext,
  task: Drawing,
  reason: string,
  effects: JobEffects,
): Promise<{ seed: number; params: EffectParams } | "lost" | "bound"> {
  const { config, db } = ctx;
  for (let tries = 0; tries < 5; tries++) {
    const seed = (crypto.getRandomValues(new Uint32Array(1))[0]! >>> 1) || 1;
    const params = deriveParams(seed, effects);
    try {
      const r = await retryDb(() =>
        redrawVariation(db, { ...task.own, seed, params: { ...params }, reason, maxRedraws: config.MAX_REDRAWS }),
      );
      return r === "redrawn" ? { seed, params } : r;
    } catch (err) {
      // The seed is a sibling's (1 in ~2^31 per draw): draw another.
      if (!isSeedTaken(err)) throw err;
    }
  }
  throw new Error("could not draw a seed new to the job");
}

/**
 * After the completion is recorded, distinctness is made symmetric: every completed sibling (those compared
 * before, whose own figure may still be null or larger, and those that completed while this one was measured)
 * gets its figure lowered to its distance from this one, and this one's to the closest (whichever of two
 * simultaneous siblings records second sees the first). Best effort: a failure leaves figures that later
 * siblings lower further.
 */
export async function compareSiblings(ctx: Pick<DrawContext, "db" | "log">, task: Pick<Drawing, "id" | "claim">, fingerprint: string): Promise<void> {
  const { db, log } = ctx;
  try {
    const siblings = await listSiblingFingerprints(db, { sourceId: task.claim.sourceId, exceptId: task.id });
    const figures = siblings.flatMap((x) => {
      const d = closestDistance(fingerprint, [x.fingerprint]);
      return d === null ? [] : [{ variationId: x.id, distinct: d }, { variationId: task.id, distinct: d }];
    });
    await lowerDistinctness(db, figures);
  } catch (err) {
    log.warn("could not compare with siblings", { variation: task.id, error: errorMessage(err) });
  }
}
