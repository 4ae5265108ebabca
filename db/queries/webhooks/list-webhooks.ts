import { desc, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { webhooks, type WebhookEvent } from "../../schema";

export interface WebhookRow {
  id: string;
  url: string;
  events: WebhookEvent[];
  createdAt: number;
}

export function parseEvents(json: string): WebhookEvent[] {
  try {
    const v = JSON.parse(json);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/** The user's webhooks, newest first, without their secrets. */
export async function listWebhooks(db: Db, userId: string): Promise<WebhookRow[]> {
  const rows = await db
    .select({ id: webhooks.id, url: webhooks.url, events: webhooks.events, createdAt: webhooks.createdAt })
    .from(webhooks)
    .where(eq(webhooks.userId, userId))
    .orderBy(desc(webhooks.createdAt), desc(webhooks.id));
  return rows.map((r) => ({ ...r, events: parseEvents(r.events) }));
}
