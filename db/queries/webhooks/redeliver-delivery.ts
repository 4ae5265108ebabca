import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError, NotFoundError } from "../../errors";
import { webhookDeliveries, webhooks } from "../../schema";
import { hasRoomForManualSend, tooManyPending } from "./manual-send-limit";

/**
 * A delivered or failed delivery → pending again, due now, with a fresh retry series (attempts 0, a new 24-hour window); same id and
 * payload, so the receiver sees the same message. A pending one is already on its way: 409 `delivery_pending`;
 * 429 `too_many_pending` while the webhook has MANUAL_SEND_PENDING_LIMIT deliveries pending.
 */
export async function redeliverDelivery(
  db: Db,
  input: { userId: string; webhookId: string; deliveryId: string },
  now: number,
): Promise<void> {
  const mine = sql`id = ${input.deliveryId} AND webhook_id = ${input.webhookId}
    AND webhook_id IN (SELECT w.id FROM ${webhooks} w WHERE w.user_id = ${input.userId})`;
  const [updated, found] = await db.batch([
    db.all<{ id: string }>(sql`
      UPDATE ${webhookDeliveries} SET status = 'pending', attempts = 0, next_attempt_at = ${now}, lease_until = NULL, enqueued_until = NULL,
        delivered_at = NULL, series_started_at = ${now}
      WHERE ${mine} AND status IN ('delivered', 'failed') AND ${hasRoomForManualSend(input.webhookId)}
      RETURNING id`),
    db.all<{ status: string }>(sql`SELECT status FROM ${webhookDeliveries} WHERE ${mine}`),
  ]);
  if (updated.length > 0) return;
  if (found.length === 0) throw new NotFoundError("No such delivery");
  if (found[0]!.status === "pending") throw new ConflictError("delivery_pending", "This delivery is still being attempted");
  throw tooManyPending();
}
