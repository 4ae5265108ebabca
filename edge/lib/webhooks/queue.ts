import type { Db } from "../../../db/client";
import { hasWebhooks, listDueDeliveries, pruneDeliveries } from "../../../db/queries/webhooks";
import { deliverOnce, type DeliverDeps } from "./deliver";

/** Queue messages only point at outbox rows; the row is the truth, so a lost or duplicated message costs nothing. */
export type WebhookMessage = { kind: "deliver"; id: string } | { kind: "sweep" };

export interface WebhookQueueDeps extends DeliverDeps {
  queue: Queue<WebhookMessage>;
}

const SWEEP_LIMIT = 100;
/** How long settled deliveries stay in the log. */
export const DELIVERY_LOG_DAYS = 7;
/** Between two cron ticks (1 min) the cron schedules a sweep every this many seconds (runners' events wait ≤ this). */
export const SWEEP_EVERY_SECONDS = 5;

/**
 * Enqueues every due pending delivery (new events from any writer, retries whose message was lost, rows an edge
 * that died mid-send left leased). Duplicates are harmless: claimDelivery lets one consumer send a row at a time.
 */
export async function enqueueDueDeliveries(deps: { db: Db; queue: Queue<WebhookMessage> }, now: number): Promise<number> {
  const ids = await listDueDeliveries(deps.db, now, SWEEP_LIMIT);
  if (ids.length > 0) await deps.queue.sendBatch(ids.map((id) => ({ body: { kind: "deliver", id } as WebhookMessage })));
  return ids.length;
}

/**
 * For the cron (every minute): sweep now, and when anyone has a webhook, schedule delayed sweeps every
 * SWEEP_EVERY_SECONDS until the next tick. Runners write job events straight into libSQL and never call the edge,
 * so these sweeps are what brings their events out within ~5 s; each is one indexed query.
 */
export async function sweepWebhookDeliveries(deps: { db: Db; queue: Queue<WebhookMessage> }, now: number): Promise<Record<string, number>> {
  // Each step on its own: a failed sweep (database briefly unreachable) must not also cancel the minute's later
  // sweeps, and an unknown "anyone subscribed?" answer schedules them rather than skip them.
  const enqueued = await enqueueDueDeliveries(deps, now).catch((err) => {
    console.error("webhook sweep failed", err instanceof Error ? err.message : String(err));
    return 0;
  });
  let scheduled = 0;
  if (await hasWebhooks(deps.db).catch(() => true)) {
    const sweeps: MessageSendRequest<WebhookMessage>[] = [];
    for (let s = SWEEP_EVERY_SECONDS; s < 60; s += SWEEP_EVERY_SECONDS) sweeps.push({ body: { kind: "sweep" }, delaySeconds: s });
    await deps.queue.sendBatch(sweeps);
    scheduled = sweeps.length;
  }
  const pruned = await pruneDeliveries(deps.db, now - DELIVERY_LOG_DAYS * 86_400_000).catch(() => 0);
  return { enqueued, scheduled, pruned };
}

/**
 * The queue consumer. Retries are the outbox's: a failed attempt writes next_attempt_at (exponential backoff) and
 * sends a fresh message delayed until then, and the message is acked. Chosen over message.retry({delaySeconds}):
 * a queue's max_retries (≤ 100) and delay (≤ 12 h) bound what it can carry, a message can be lost with an edge
 * deploy or a queue incident, and the sweep must find stuck rows anyway; with the database as the only state, the
 * message is a hint and the sweep a complete backstop. A message whose handling threw (database down) is retried
 * by the queue, and failing that the sweep picks the row up.
 */
export async function consumeWebhookBatch(batch: MessageBatch<WebhookMessage>, deps: WebhookQueueDeps): Promise<void> {
  // Concurrently: one slow endpoint must not hold up the others' messages for its whole timeout.
  await Promise.all(batch.messages.map(async (message) => {
    try {
      const body = message.body;
      if (body.kind === "sweep") {
        await enqueueDueDeliveries(deps, Date.now());
      } else {
        const result = await deliverOnce(deps, body.id, Date.now());
        if (!result.done) {
          await deps.queue.send({ kind: "deliver", id: body.id }, { delaySeconds: Math.min(Math.ceil(result.retryInMs / 1000), 43_200) });
        }
      }
      message.ack();
    } catch (err) {
      console.error("webhook message failed", err instanceof Error ? err.message : String(err));
      message.retry({ delaySeconds: 5 });
    }
  }));
}
