import { eq } from "drizzle-orm";
import type { Db } from "../../client";
import { sources } from "../../schema";
import { assertNotExpired, loadJobRow } from "./load";
import type { Viewer } from "./present";

/**
 * The object keys of a job's sources, as the viewer may see the job (another user's job is not found; an expired
 * one is gone, whatever is left of its objects).
 */
export async function getJobSourceKeys(db: Db, input: { jobId: string; viewer: Viewer }, now: number): Promise<string[]> {
  assertNotExpired(await loadJobRow(db, input.jobId, input.viewer), now);
  const rows = await db.select({ key: sources.objectKey }).from(sources).where(eq(sources.jobId, input.jobId));
  return rows.map((r) => r.key);
}
