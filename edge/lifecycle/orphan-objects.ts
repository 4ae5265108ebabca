import { recordedObjectKeys } from "../../db/queries/objects";
import { deleteKeys } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/** Younger objects may belong to an upload whose row is about to be written (runner output, job creation). */
export const ORPHAN_MIN_AGE_MS = 60 * 60 * 1000;
const PREFIXES = ["outputs/", "thumbs/", "sources/", "uploads/"];
const MAX_PAGES_PER_PREFIX = 10;

/** Deletes stored objects that no row records and that are older than an hour. */
export async function deleteOrphanObjects(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  let scanned = 0;
  let deleted = 0;
  for (const prefix of PREFIXES) {
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES_PER_PREFIX; page++) {
      const listing = await deps.bucket.list({ prefix, cursor, limit: 1000 });
      const old = listing.objects.filter((o) => o.uploaded.getTime() <= now - ORPHAN_MIN_AGE_MS).map((o) => o.key);
      scanned += listing.objects.length;
      const recorded = await recordedObjectKeys(deps.db, old);
      const orphans = old.filter((k) => !recorded.has(k));
      await deleteKeys(deps.bucket, orphans);
      deleted += orphans.length;
      if (!listing.truncated) break;
      cursor = listing.cursor;
    }
  }
  return { scanned, deleted };
}
