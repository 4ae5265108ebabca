import { and, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { NotFoundError } from "../../errors";
import { webhooks } from "../../schema";

/** Deletes one of the user's webhooks (its deliveries cascade); someone else's is NotFound like an unknown one. */
export async function deleteWebhook(db: Db, input: { userId: string; id: string }): Promise<void> {
  const gone = await db
    .delete(webhooks)
    .where(and(eq(webhooks.id, input.id), eq(webhooks.userId, input.userId)))
    .returning({ id: webhooks.id });
  if (gone.length === 0) throw new NotFoundError("No such webhook");
}
