import { and, desc, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { webhookDeliveries, webhooks, type DeliveryStatus } from "../../schema";

export interface DeliveryRow {
  id: string;
  event: string;
  jobId: string | null;
  status: DeliveryStatus;
  attempts: number;
  occurredAt: number;
  nextAttemptAt: number;
  lastAttemptAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  deliveredAt: number | null;
}

/**
 * The delivery log of one of the user's webhooks, newest first (another user's webhook is NotFound). A pending row
 * waiting while its endpoint is held after failures (endpoint-hold.ts) shows the endpoint's next attempt, not its
 * own past due time.
 */
export async function listDeliveries(db: Db, input: { userId: string; webhookId: string; limit: number }): Promise<DeliveryRow[]> {
  const [owner, rows] = await db.batch([
    db
      .select({ id: webhooks.id, heldUntil: webhooks.heldUntil })
      .from(webhooks)
      .where(and(eq(webhooks.id, input.webhookId), eq(webhooks.userId, input.userId))),
    db
      .select({
        id: webhookDeliveries.id,
        event: webhookDeliveries.event,
        jobId: webhookDeliveries.jobId,
        status: webhookDeliveries.status,
        attempts: webhookDeliveries.attempts,
        occurredAt: webhookDeliveries.occurredAt,
        nextAttemptAt: webhookDeliveries.nextAttemptAt,
        lastAttemptAt: webhookDeliveries.lastAttemptAt,
        lastStatusCode: webhookDeliveries.lastStatusCode,
        lastError: webhookDeliveries.lastError,
        deliveredAt: webhookDeliveries.deliveredAt,
      })
      .from(webhookDeliveries)
      .innerJoin(webhooks, eq(webhooks.id, webhookDeliveries.webhookId))
      .where(and(eq(webhookDeliveries.webhookId, input.webhookId), eq(webhooks.userId, input.userId)))
      .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.id))
      .limit(input.limit),
  ]);
  if (owner.length === 0) throw new NotFoundError("No such webhook");
  const until = owner[0]!.heldUntil;
  return rows.map((r) => (r.status === "pending" && until !== null && until > r.nextAttemptAt ? { ...r, nextAttemptAt: until } : r));
}
