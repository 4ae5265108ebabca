import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { webhooks, type WebhookEvent } from "../../schema";
import { makeWaitingRowsDue } from "./endpoint-hold";
import { parseEvents, type WebhookRow } from "./list-webhooks";

/**
 * Changes one of the user's webhooks in place — its URL, its events or both — keeping its id, secret and delivery
 * log. Setting given values, so a repeated request changes nothing more. A new URL is a new endpoint: the old one's
 * failures say nothing about it, so its hold is cleared and the rows that were waiting it out become due (they go
 * to the new URL; so does everything else still pending). New events apply to job changes from now on. Someone
 * else's webhook is NotFound like an unknown one.
 */
export async function updateWebhook(
  db: Db,
  input: { userId: string; id: string; url?: string; events?: readonly WebhookEvent[] },
  now: number,
): Promise<WebhookRow> {
  const mine = and(eq(webhooks.id, input.id), eq(webhooks.userId, input.userId));
  const moved = input.url === undefined ? sql`0` : sql`(${webhooks.url} <> ${input.url})`;
  const [rows] = await db.batch([
    db
      .update(webhooks)
      .set({
        ...(input.url === undefined ? {} : { url: input.url }),
        ...(input.events === undefined ? {} : { events: JSON.stringify(input.events) }),
        // SET expressions read the row as it was: `moved` compares the old URL.
        failures: sql`CASE WHEN ${moved} THEN 0 ELSE ${webhooks.failures} END`,
        heldUntil: sql`CASE WHEN ${moved} THEN NULL ELSE ${webhooks.heldUntil} END`,
      })
      .where(mine)
      .returning({ id: webhooks.id, url: webhooks.url, events: webhooks.events, createdAt: webhooks.createdAt }),
    // After the webhook row changed (one batch, in order), so this sees whether a new URL cleared the hold; rows
    // waiting out a hold that is over are due already. An attempt in flight to the old URL records its verdict on
    // the endpoint only while the webhook still has that URL (recordDeliveryAttempt), so it cannot hold the new one.
    db.run(
      makeWaitingRowsDue(input.id, now, sql`EXISTS (SELECT 1 FROM ${webhooks} w WHERE w.id = ${input.id} AND w.user_id = ${input.userId} AND w.held_until IS NULL)`),
    ),
  ]);
  const [row] = rows;
  if (!row) throw new NotFoundError("No such webhook");
  return { ...row, events: parseEvents(row.events) };
}
