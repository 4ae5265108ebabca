import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { newId } from "../../ids";
import { webhookDeliveries, webhooks, WEBHOOK_TEST_EVENT } from "../../schema";

/**
 * Queues a `webhook.test` event for one of the user's webhooks; its payload is fixed here (there is no job).
 * Returns the delivery id, for the caller to enqueue.
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
    FROM ${webhooks} w WHERE w.id = ${input.webhookId} AND w.user_id = ${input.userId}
    RETURNING id`);
  if (rows.length === 0) throw new NotFoundError("No such webhook");
  return id;
}
