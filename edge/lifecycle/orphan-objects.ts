import { KEY_PREFIXES } from "../../db/keys";
import { INGEST_HOLD_MS } from "../../db/limits";
import { deleteStaleIngests, releaseIdleIngestRooms } from "../../db/queries/ingests";
import { recordedObjectKeys } from "../../db/queries/objects";
import { readSweepCursor, saveSweepCursor } from "../../db/queries/sweep-cursors";
import { INGEST_TOUCH_MS } from "../lib/ingest";
import { deleteKeys } from "../lib/storage";
import type { LifecycleDeps } from "./index";

/**
 * Younger objects may belong to an upload whose row is about to be written (runner output). A form upload's
 * sources are protected for as long as its ingest row is touched within this age, however long the POST takes.
 */
export const ORPHAN_MIN_AGE_MS = 60 * 60 * 1000;
/**
 * An ingest counts as dead once its recorded touch is older than the hour plus one touch interval. A live upload
 * records a touch only when bytes arrive INGEST_TOUCH_MS after the last recorded one, so the row can lag its last
 * bytes by up to that much; without the margin an upload silent for 55 minutes could be dropped, while the API
 * promises an hour.
 */
export const INGEST_STALE_MS = ORPHAN_MIN_AGE_MS + INGEST_TOUCH_MS;
/** Objects per listing (R2's maximum) and listings per tick: one tick stays short, the next goes on from there. */
export const ORPHAN_PAGE_SIZE = 1000;
export const ORPHAN_PAGES_PER_TICK = 10;
const CURSOR = "orphan-objects";

/**
 * Where the walk goes on from: the prefix the last handled key belongs to, listing after that key. A key that is
 * exactly a prefix marks "this prefix from its start" (no stored object is named like that).
 */
function position(lastKey: string): { prefixIndex: number; startAfter: string | undefined } {
  const i = KEY_PREFIXES.findIndex((p) => lastKey.startsWith(p));
  if (i < 0) return { prefixIndex: 0, startAfter: undefined };
  return { prefixIndex: i, startAfter: lastKey === KEY_PREFIXES[i] ? undefined : lastKey };
}

/**
 * Deletes stored objects that no row records and that are older than an hour. The bucket is walked prefix by
 * prefix over successive ticks (ORPHAN_PAGES_PER_TICK listings each), resuming after the last key handled, so
 * every object is eventually looked at however many live objects sort before it; a full pass ends the tick.
 * First, ingests silent for an hour (INGEST_STALE_MS) are dropped: their request died, and what they stored is now
 * an orphan; those silent for INGEST_HOLD_MS give back the room they hold in the storage quota beyond what they may
 * have stored (releaseIdleIngestRooms).
 */
export async function deleteOrphanObjects(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  const staleIngests = await deleteStaleIngests(deps.db, now - INGEST_STALE_MS);
  const idleRooms = await releaseIdleIngestRooms(deps.db, now - INGEST_HOLD_MS);
  let lastKey = await readSweepCursor(deps.db, CURSOR);
  let scanned = 0;
  let deleted = 0;
  let passes = 0;
  for (let page = 0; page < ORPHAN_PAGES_PER_TICK; page++) {
    const { prefixIndex, startAfter } = position(lastKey);
    const prefix = KEY_PREFIXES[prefixIndex]!;
    const listing = await deps.bucket.list({ prefix, startAfter, limit: ORPHAN_PAGE_SIZE });
    scanned += listing.objects.length;
    const old = listing.objects.filter((o) => o.uploaded.getTime() <= now - ORPHAN_MIN_AGE_MS).map((o) => o.key);
    // The same cutoff as the ingest delete above: a kept ingest must keep protecting what it stored.
    const recorded = await recordedObjectKeys(deps.db, old, now - INGEST_STALE_MS);
    const orphans = old.filter((k) => !recorded.has(k));
    await deleteKeys(deps.bucket, orphans);
    deleted += orphans.length;
    const last = listing.objects.at(-1)?.key;
    if (listing.truncated && last) {
      lastKey = last;
    } else if (prefixIndex + 1 < KEY_PREFIXES.length) {
      lastKey = KEY_PREFIXES[prefixIndex + 1]!;
    } else {
      lastKey = "";
      passes++;
    }
    // After every page, not once at the end: a tick the platform ends (time or subrequest limit) runs no finally,
    // and every later tick would walk the same first pages again, never reaching the prefixes after them.
    await saveSweepCursor(deps.db, CURSOR, lastKey, now);
    if (lastKey === "") break;
  }
  return { scanned, deleted, passes, staleIngests, idleRooms };
}
