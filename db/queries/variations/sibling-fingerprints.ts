import { sql } from "drizzle-orm";
import type { Db } from "../../client";

/**
 * Fingerprints of the completed variations of a source other than `exceptId` (runner/quality.ts): what a runner
 * compares a new output with to measure its distinctness, whichever runner encoded the siblings.
 */
export async function listSiblingFingerprints(
  db: Db,
  input: { sourceId: string; exceptId: string },
): Promise<{ id: string; fingerprint: string }[]> {
  return db.all<{ id: string; fingerprint: string }>(sql`
    SELECT id, fingerprint FROM variations
    WHERE source_id = ${input.sourceId} AND id <> ${input.exceptId} AND status = 'completed' AND fingerprint IS NOT NULL`);
}
