import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { batchOf } from "./batch";

/**
 * Distinctness is the distance to the closest sibling, so a sibling that completes later can only lower it. After
 * recording its own output, a runner compares with the siblings completed meanwhile and lowers both figures: of two
 * variations that completed at the same time, the one recorded second sees the first, so every pair is compared
 * once. Not a state change: only completed rows, only downwards (min), so it is idempotent and order-free.
 */
export async function lowerDistinctness(db: Db, figures: { variationId: string; distinct: number }[]): Promise<void> {
  if (figures.length === 0) return;
  await batchOf(
    db,
    figures.map((f) =>
      db.run(sql`
        UPDATE variations SET distinctness = min(coalesce(distinctness, ${f.distinct}), ${f.distinct})
        WHERE id = ${f.variationId} AND status = 'completed'`),
    ),
  );
}
