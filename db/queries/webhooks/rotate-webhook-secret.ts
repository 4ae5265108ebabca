import { and, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { ConflictError, NotFoundError } from "../../errors";
import { webhooks } from "../../schema";
import { liveRetiringSecrets, MAX_RETIRING_SECRETS } from "./retiring-secrets";
import { newWebhookSecret } from "./secret";

/** Reads before giving up on a webhook whose secret keeps changing under this rotation (other rotations at once). */
const ROTATE_TRIES = 3;

/**
 * Gives one of the user's webhooks a new signing secret, returned only here. The replaced secret keeps signing for
 * `keepPreviousMs`, and so do those replaced before it that still sign (at least that long; see retiring-secrets.ts);
 * `previousSecretsValidUntil` is the end of that time, which holds for each of them. 0 stops every old secret at
 * once (a leaked secret). A compare-and-set on the secret it read: two rotations at once both happen,
 * one after the other, and neither drops the secret the other replaced. Someone else's webhook is NotFound.
 */
export async function rotateWebhookSecret(
  db: Db,
  input: { userId: string; webhookId: string; keepPreviousMs: number },
  now: number,
): Promise<{ secret: string; previousSecretsValidUntil: number | null }> {
  const mine = and(eq(webhooks.id, input.webhookId), eq(webhooks.userId, input.userId));
  for (let i = 0; i < ROTATE_TRIES; i++) {
    const [row] = await db.select({ secret: webhooks.secret, retiring: webhooks.retiringSecrets }).from(webhooks).where(mine);
    if (!row) throw new NotFoundError("No such webhook");
    // Every old secret signs at least as long as the one just replaced: the answer's time then holds for whichever
    // of them the receiver has (after a repeated rotation it has an older one), not only for the last.
    const until = now + input.keepPreviousMs;
    const retiring =
      input.keepPreviousMs === 0
        ? []
        : [{ secret: row.secret, until }, ...liveRetiringSecrets(row.retiring, now).map((r) => ({ ...r, until: Math.max(r.until, until) }))].slice(
            0,
            MAX_RETIRING_SECRETS,
          );
    const secret = newWebhookSecret();
    const moved = await db
      .update(webhooks)
      .set({ secret, retiringSecrets: retiring.length ? JSON.stringify(retiring) : null })
      .where(and(mine, eq(webhooks.secret, row.secret)))
      .returning({ id: webhooks.id });
    if (moved.length === 1) {
      return { secret, previousSecretsValidUntil: retiring.length ? until : null };
    }
  }
  throw new ConflictError("rotation_conflict", "The secret was being rotated by other requests at the same time; try again");
}
