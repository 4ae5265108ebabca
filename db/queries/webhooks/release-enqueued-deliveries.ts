import { inArray } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries } from "../../schema";

/**
 * Undoes takeDueDeliveries' mark for rows whose queue messages were not sent (the queue refused the batch): the next
 * sweep takes them again instead of waiting out the hold.
 */
export async function releaseEnqueuedDeliveries(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.update(webhookDeliveries).set({ enqueuedUntil: null }).where(inArray(webhookDeliveries.id, [...ids]));
}
