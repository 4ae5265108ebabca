import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { newId } from "../../ids";
import { webhookDeliveries, webhooks, WEBHOOK_TEST_EVENT } from "../../schema";
import { hasRoomForManualSend, tooManyPending } from "./manual-send-limit";

/**
 * Queues a `webhook.test` event for one of the user's webhooks; its payload is fixed here (there is no job).
 * Returns the delivery id, for the caller to enqueue. 429 `too_many_pending` while the webhook has
 * MANUAL_SEND_PENDING_LIMIT deliveries pending (the count and the insert are one statement).
 */
export async function createTestDelivery(db: Db, input: { userId: string; webhookId: string }, now: number): Promise<string> {
  const id = newId();
  const payload = JSON.stringify({
    type: WEBHOOK_TEST_EVENT,
    timestamp: new Date(now).toISOString(),
    data: { webhookId: input.webhookId, message: "Test event from Video Refresher" },
  });
  const rows = await db.all<{ id: string }>(sql`
    INSERT INTO ${webhookDeliveries} (id, webhook_id, job_id, event, occurred_at, status, attempts, next_attempt_at, payload, created_at)
    SELECT ${id}, w.id, NULL, ${WEBHOOK_TEST_EVENT}, ${now}, 'pending', 0, ${now}, ${payload}, ${now}
    FROM ${webhooks} w WHERE w.id = ${input.webhookId} AND w.user_id = ${input.userId} AND ${hasRoomForManualSend(sql`w.id`)}
    RETURNING id`);
  if (rows.length > 0) return id;
  const mine = await db.all<{ id: string }>(sql`SELECT id FROM ${webhooks} WHERE id = ${input.webhookId} AND user_id = ${input.userId}`);
  throw mine.length === 0 ? new NotFoundError("No such webhook") : tooManyPending();
}
