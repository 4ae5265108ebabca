import { sql, type SQL } from "drizzle-orm";
import type { Db } from "../../client";
import type { VariationStatus } from "../../schema";
import { finalizeJobStatement } from "../finalize";
import { MAX_ATTEMPTS, owned, ROW_JOB_CANCELS_WORK, type Ownership, type StopStage } from "../states";

/**
 * Every runner-side arrow out of `running` goes through here. Each is one compare-and-set with ownership
 * (id + runner + attempt) batched with the job's finalize: whoever settles the last variation finalizes the job,
 * and since a batch is one transaction, two runners settling the last two variations cannot both miss it.
 *
 * Settling is idempotent: a runner retries a settle whose reply was lost (the commit may have happened), so a CAS
 * that matches nothing reads the row back, and the same attempt already recorded with the same outcome is success.
 * Without this, a lost reply after a committed completion looked like a lost lease and the runner deleted the
 * object the database records.
 */
async function settle(
  db: Db,
  o: Ownership,
  set: SQL,
  now: number,
  /** Given the row read back (still carrying this runner's id): did this very attempt already settle it so? */
  alreadyDone: (row: { status: VariationStatus; outputKey: string | null }) => boolean,
): Promise<{ ok: boolean; status: VariationStatus | null }> {
  const [rows] = await db.batch([
    db.all<{ status: VariationStatus }>(sql`UPDATE variations SET ${set} WHERE ${owned(o)} RETURNING status`),
    finalizeJobStatement(db, sql`jobs.id = (SELECT job_id FROM variations WHERE id = ${o.variationId})`, now),
  ]);
  if (rows[0]) return { ok: true, status: rows[0].status };
  // No later claim (claims unchanged) and still this runner's id: the row is as this attempt left it.
  const [row] = await db.all<{ status: VariationStatus; runnerId: string | null; claims: number; outputKey: string | null }>(sql`
    SELECT status, runner_id AS runnerId, claims, output_key AS outputKey FROM variations WHERE id = ${o.variationId}`);
  const mine = !!row && row.runnerId === o.runnerId && row.claims === o.attempt;
  return { ok: mine && alreadyDone(row), status: row?.status ?? null };
}

/** What a runner measured on the output it records (runner/quality.ts); null figures when measuring failed. */
export interface FinishQuality {
  seed: number;
  params: Record<string, unknown>;
  ssim: number | null;
  psnr: number | null;
  distinct: number | null;
  fingerprint: string | null;
  thumbnailKey: string | null;
  /** Set when the kept draw is a re-draw or the best of several: why, for the user. */
  redrawReason: string | null;
}

/** Of the bytes the runner uploaded: what the ZIP download needs to lay out its headers without reading them. */
export interface OutputDigest {
  /** 64 lowercase hex characters. */
  sha256: string;
  /** Unsigned, 0 ≤ crc32 < 2³². */
  crc32: number;
}

/**
 * running → completed with the output this attempt uploaded. True when the database records `outputKey` for this
 * variation (now or from an earlier try of the same call); false when another attempt owns the variation — only
 * then may the caller delete what it uploaded (and the edge refuses to delete a recorded key anyway).
 */
export async function finishVariation(
  db: Db,
  input: Ownership & { outputKey: string; outputSize: number; digest?: OutputDigest; now: number; quality?: FinishQuality },
): Promise<boolean> {
  const { outputKey, outputSize, now } = input;
  const digest = input.digest ?? { sha256: null, crc32: null };
  const q = input.quality;
  // With the quality figures: the kept draw's seed and parameters (after re-draws the best one may be an earlier
  // draw), the figures, the fingerprint and the thumbnail, all in the same compare-and-set as the completion.
  const quality = q
    ? sql`, seed = ${q.seed}, params = ${JSON.stringify(q.params)}, ssim = ${q.ssim}, psnr = ${q.psnr},
        distinctness = ${q.distinct}, fingerprint = ${q.fingerprint}, thumbnail_key = ${q.thumbnailKey},
        redraw_reason = coalesce(${q.redrawReason}, redraw_reason)`
    : sql``;
  const r = await settle(
    db,
    input,
    sql`status = 'completed', progress = 100, finished_at = ${now}, lease_expires_at = NULL,
      output_key = ${outputKey}, output_size = ${outputSize}, output_sha256 = ${digest.sha256},
      output_crc32 = ${digest.crc32}, error = NULL${quality}`,
    now,
    (row) => row.status === "completed" && row.outputKey === outputKey,
  );
  return r.ok;
}

/** running → failed with a readable reason (never an internal path: it is shown to users). */
export async function failVariation(db: Db, input: Ownership & { error: string; now: number }): Promise<boolean> {
  const { error, now } = input;
  const r = await settle(
    db,
    input,
    sql`status = 'failed', finished_at = ${now}, lease_expires_at = NULL, error = ${error}`,
    now,
    (row) => row.status === "failed",
  );
  return r.ok;
}

/**
 * The end of a stop (cancel or pause seen by the runner, shutdown, edge unavailable), one compare-and-set that
 * decides from the job, in SQL, what the stop meant: the job cancels work (cancel requested, or finished) →
 * cancelled with `stopStage`; otherwise (paused, or resumed before the runner got here, or a plain hand-back) →
 * queued with the attempt refunded, so a pause costs nothing and the variation is claimed again after a resume.
 * The runner id stays on the row, so a retried call can tell its own settle from another runner's claim.
 */
function stopSettle(db: Db, input: Ownership & { now: number; stopStage?: StopStage | null }) {
  const { now } = input;
  const cancels = ROW_JOB_CANCELS_WORK;
  return settle(
    db,
    input,
    sql`status = CASE WHEN ${cancels} THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN ${cancels} THEN attempts ELSE max(attempts - 1, 0) END,
        finished_at = CASE WHEN ${cancels} THEN ${now} ELSE NULL END,
        stop_stage = CASE WHEN ${cancels} THEN ${input.stopStage ?? null} ELSE NULL END,
        started_at = CASE WHEN ${cancels} THEN started_at ELSE NULL END,
        lease_expires_at = NULL,
        progress = CASE WHEN ${cancels} THEN progress ELSE 0 END`,
    now,
    (row) => row.status === "cancelled" || row.status === "queued",
  );
}

/**
 * running → cancelled after the stop sequence the runner ran because the job refused work, with the last stage
 * that was needed; → queued (attempt refunded) instead when the job was paused, not cancelled (see stopSettle).
 */
export async function cancelVariation(
  db: Db,
  input: Ownership & { stopStage: StopStage | null; now: number },
): Promise<boolean> {
  return (await stopSettle(db, input)).ok;
}

/**
 * running → queued without counting the attempt (shutdown, edge unavailable: nothing is wrong with the variation).
 * If its job was asked to cancel meanwhile, → cancelled instead: a queued variation of a cancelling job would
 * never be claimed and the job would never finish. A paused job's variation goes back to the queue.
 */
export async function releaseVariation(
  db: Db,
  input: Ownership & { now: number; stopStage?: StopStage | null },
): Promise<boolean> {
  return (await stopSettle(db, input)).ok;
}

/**
 * A failure worth another attempt (transient network error, a runner-local problem, a stalled encode): back to the
 * queue with the attempt counted, or failed with `error` once the attempt cap is reached (cancelled if the job
 * cancels work; a paused job's variation is requeued or failed like any other). Returns the new status, or null when this attempt does not own the variation.
 */
export async function requeueVariation(
  db: Db,
  input: Ownership & { error: string; now: number },
): Promise<"queued" | "failed" | "cancelled" | null> {
  const { error, now } = input;
  const refuses = ROW_JOB_CANCELS_WORK;
  const atCap = sql`attempts >= ${MAX_ATTEMPTS}`;
  const r = await settle(
    db,
    input,
    sql`status = CASE WHEN ${refuses} THEN 'cancelled' WHEN ${atCap} THEN 'failed' ELSE 'queued' END,
        error = CASE WHEN ${refuses} THEN error ELSE ${error} END,
        finished_at = CASE WHEN ${refuses} OR ${atCap} THEN ${now} ELSE NULL END,
        lease_expires_at = NULL,
        progress = 0`,
    now,
    (row) => row.status === "queued" || row.status === "failed" || row.status === "cancelled",
  );
  return r.ok ? (r.status as "queued" | "failed" | "cancelled") : null;
}
