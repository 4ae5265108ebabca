import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { isConstraintFailure } from "../../errors";
import { owned, type Ownership } from "../states";

/**
 * True when a re-draw failed because another variation of the job holds the seed (variations_job_seed_uq). Walks the
 * error's causes: drizzle's wrapper (and the runner's DbCallError) carry only the statement in their own message.
 */
export const isSeedTaken = (err: unknown) => isConstraintFailure(err, "UNIQUE constraint failed: variations.job_id, variations.seed");

/** A variation is re-drawn at most this many times per claim history (runner config may lower it). */
export const MAX_REDRAWS = 2;

/**
 * running → running with a new seed: this attempt's output was too damaged or too close to a sibling
 * (runner/quality.ts), so it draws again. One compare-and-set with ownership and the bound: `redraws` grows by one
 * only while below `maxRedraws`; the new seed's parameters are recorded with it, progress starts over. The seed
 * must be new to the job (variations_job_seed_uq): a clash throws, and the caller draws another seed.
 * Returns "redrawn", "bound" (this attempt owns the row but it was re-drawn `maxRedraws` times already: keep what
 * there is) or "lost" (this attempt does not own the variation any more). A retry after a lost reply of a committed
 * re-draw reads back the new seed: "redrawn". The seed in the WHERE makes that retry a no-op: sent again as is, the
 * UPDATE matched once more and spent a second re-draw of the bound on the same seed.
 */
export async function redrawVariation(
  db: Db,
  input: Ownership & { seed: number; params: Record<string, unknown>; reason: string; maxRedraws: number },
): Promise<"redrawn" | "bound" | "lost"> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE variations SET seed = ${input.seed}, params = ${JSON.stringify(input.params)}, redraws = redraws + 1,
      redraw_reason = ${input.reason}, progress = 0
    WHERE ${owned(input)} AND redraws < ${input.maxRedraws} AND seed <> ${input.seed}
    RETURNING id`);
  if (rows.length > 0) return "redrawn";
  const [row] = await db.all<{ seed: number }>(sql`SELECT seed FROM variations WHERE ${owned(input)}`);
  if (!row) return "lost";
  return row.seed === input.seed ? "redrawn" : "bound";
}
