import { and, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { webhooks } from "../../schema";
import { parseEvents, type WebhookRow } from "./list-webhooks";

/**
 * How long a repeat of a create's Idempotency-Key answers the webhook it created, secret included: long enough for any
 * retry after a lost answer, short enough that the key is not a standing way to read the current secret.
 */
export const WEBHOOK_KEY_REPLAY_MS = 24 * 3_600_000;

/**
 * The webhook a POST /api/webhooks with this `Idempotency-Key` created for this user, with its current secret (the
 * answer that carried it may be the one that was lost), or null. Keys are per user; a deleted webhook frees its key.
 */
export async function findWebhookByIdempotencyKey(
  db: Db,
  input: { userId: string; key: string },
): Promise<(WebhookRow & { secret: string; fingerprint: string | null }) | null> {
  const [row] = await db
    .select({
      id: webhooks.id,
      url: webhooks.url,
      events: webhooks.events,
      createdAt: webhooks.createdAt,
      secret: webhooks.secret,
      fingerprint: webhooks.idempotencyFingerprint,
    })
    .from(webhooks)
    .where(and(eq(webhooks.userId, input.userId), eq(webhooks.idempotencyKey, input.key)));
  return row ? { ...row, events: parseEvents(row.events) } : null;
}
