import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { owned, type Ownership } from "../states";

/**
 * Records the effect parameters this attempt applies (CAS on ownership). A row with params is "started": if the
 * runner drops it, the attempt counts (see runnerRoundTrip's stranded rule).
 */
export async function recordVariationParams(db: Db, input: Ownership & { params: Record<string, unknown> }): Promise<boolean> {
  const rows = await db.all<{ id: string }>(sql`
    UPDATE variations SET params = ${JSON.stringify(input.params)} WHERE ${owned(input)} RETURNING id`);
  return rows.length > 0;
}
