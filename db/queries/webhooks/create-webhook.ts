import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError } from "../../errors";
import { newId } from "../../ids";
import { webhooks, type WebhookEvent } from "../../schema";
import { newWebhookSecret } from "./secret";
import type { WebhookRow } from "./list-webhooks";

/** Endpoints per user; each one multiplies every job event into a delivery. */
export const WEBHOOKS_PER_USER = 10;

/**
 * Subscribes `url` to `events` for the user. The count check and the insert are one statement, so concurrent
 * creates cannot pass the limit together. The secret is returned only here.
 */
export async function createWebhook(
  db: Db,
  input: { userId: string; url: string; events: readonly WebhookEvent[]; idempotencyKey?: string | null },
  now: number,
): Promise<WebhookRow & { secret: string; fingerprint: string | null }> {
  const row = { id: newId(), userId: input.userId, url: input.url, secret: newWebhookSecret(), events: JSON.stringify(input.events), createdAt: now };
  const fingerprint = input.idempotencyKey ? webhookFingerprint(input.url, input.events) : null;
  // A twin request with the same key that committed first makes this insert fail on the key's unique index; the
  // caller then finds that webhook (findWebhookByIdempotencyKey).
  const inserted = await db.all<{ id: string }>(sql`
    INSERT INTO ${webhooks} (id, user_id, url, secret, events, created_at, idempotency_key, idempotency_fingerprint)
    SELECT ${row.id}, ${row.userId}, ${row.url}, ${row.secret}, ${row.events}, ${row.createdAt}, ${input.idempotencyKey ?? null}, ${fingerprint}
    WHERE (SELECT count(*) FROM ${webhooks} WHERE user_id = ${row.userId}) < ${WEBHOOKS_PER_USER}
    RETURNING id`);
  if (inserted.length === 0) {
    throw new ConflictError("webhook_limit", `At most ${WEBHOOKS_PER_USER} webhooks per account; delete one first`);
  }
  return { id: row.id, url: row.url, events: [...input.events], createdAt: now, secret: row.secret, fingerprint };
}

/** What a create asked for, independent of event order and repeats: a repeat of its Idempotency-Key must match it. */
export function webhookFingerprint(url: string, events: readonly string[]): string {
  return JSON.stringify([url, [...new Set(events)].sort()]);
}
