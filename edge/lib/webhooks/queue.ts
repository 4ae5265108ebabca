import { loggable } from "../../../db/errors";
import type { Db } from "../../../db/client";
import { expireDeliveries, hasWebhooks, pruneDeliveries, releaseEnqueuedDeliveries, takeDueDeliveries } from "../../../db/queries/webhooks";
import { deliverOnce, type DeliverDeps } from "./deliver";
import { inBatches } from "../in-batches";

/** Queue messages only point at outbox rows; the row is the truth, so a lost or duplicated message costs nothing. */
export type WebhookMessage = { kind: "deliver"; id: string } | { kind: "sweep" };

export interface WebhookQueueDeps extends DeliverDeps {
  queue: Queue<WebhookMessage>;
  /** The invocation's waitUntil: sends still running when the batch returns go on under it. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** The consumer's clock (tests); Date.now by default. */
  now?: () => number;
}

/**
 * How long one batch waits for its sends before it returns and leaves the rest running under waitUntil. The queue
 * hands a consumer its next batch only once the current one has returned (locally, miniflare runs one batch at a
 * time), so a batch held for an endpoint's full 15-s timeout would hold every other user's deliveries behind it.
 */
export const BATCH_WAIT_MS = 2_000;

/**
 * Messages of one batch handled at once. A Worker invocation has six connections waiting for response headers at a
 * time, database calls included (libSQL over HTTP); a seventh fetch waits for a slot while its own timeout runs. Six
 * sends to an endpoint that never answers would then time out another user's healthy send queued behind them, and
 * starve the database calls that record attempts. Four leaves two for the database. wrangler.toml's max_batch_size
 * is the same number, so a batch's messages all start at once; this bound holds whatever the queue hands over.
 */
export const MAX_CONCURRENT_MESSAGES = 4;

const SWEEP_LIMIT = 100;
/** How long settled deliveries stay in the log. */
export const DELIVERY_LOG_DAYS = 7;
/** Between two cron ticks (1 min) the cron schedules a sweep every this many seconds (runners' events wait ≤ this). */
export const SWEEP_EVERY_SECONDS = 5;

/**
 * Enqueues due pending deliveries no sweep queued lately (new events from any writer, retries whose message was
 * lost, rows an edge that died mid-send left leased). Duplicates are harmless (claimDelivery lets one consumer send
 * a row at a time) but cost queue operations and reads, so a row waiting in the queue is not queued again.
 */
export async function enqueueDueDeliveries(
  deps: { db: Db; queue: Queue<WebhookMessage> },
  now: number,
  only?: { webhookId: string } | { userId: string },
): Promise<number> {
  const ids = await takeDueDeliveries(deps.db, now, only && "webhookId" in only ? 1 : SWEEP_LIMIT, only);
  if (ids.length === 0) return 0;
  try {
    await deps.queue.sendBatch(ids.map((id) => ({ body: { kind: "deliver", id } as WebhookMessage })));
  } catch (err) {
    await releaseEnqueuedDeliveries(deps.db, ids).catch(() => {});
    throw err;
  }
  return ids.length;
}

/** Rows the cron fails per expiry statement, and statements per minute at most (so up to 20,000 rows a minute). */
export const EXPIRE_BATCH = 1000;
export const EXPIRE_BATCHES_PER_MINUTE = 20;
/** Settled log rows the cron deletes per prune statement, and statements per minute at most (as for the expiry). */
export const PRUNE_BATCH = 1000;
export const PRUNE_BATCHES_PER_MINUTE = 20;

/**
 * For the cron (every minute): sweep now, and when anyone has a webhook, schedule delayed sweeps every
 * SWEEP_EVERY_SECONDS until the next tick. Runners write job events straight into libSQL and never call the edge,
 * so these sweeps are what brings their events out within ~5 s; each is one query over the due rows (found
 * through an index).
 */
export async function sweepWebhookDeliveries(deps: { db: Db; queue: Queue<WebhookMessage> }, now: number): Promise<Record<string, number>> {
  // Each step on its own: a failed sweep (database briefly unreachable) must not also cancel the minute's later
  // sweeps, and an unknown "anyone subscribed?" answer schedules them rather than skip them.
  const enqueued = await enqueueDueDeliveries(deps, now).catch((err) => {
    console.error("webhook sweep failed", loggable(err));
    return 0;
  });
  let scheduled = 0;
  if (await hasWebhooks(deps.db).catch(() => true)) {
    const sweeps: MessageSendRequest<WebhookMessage>[] = [];
    for (let s = SWEEP_EVERY_SECONDS; s < 60; s += SWEEP_EVERY_SECONDS) sweeps.push({ body: { kind: "sweep" }, delaySeconds: s });
    // A queue refusing them must not also skip the minute's expiry and pruning below.
    scheduled = await deps.queue.sendBatch(sweeps).then(
      () => sweeps.length,
      (err: unknown) => {
        console.error("webhook sweeps not scheduled", loggable(err));
        return 0;
      },
    );
  }
  // In batches until the expiry is caught up (bounded per minute): rows past their window still sit first in their
  // endpoint's due order, and every sweep reads them until they are failed, so a day-long outage's backlog must not
  // take hours to expire at one batch a minute.
  const expired = await inBatches((limit) => expireDeliveries(deps.db, now, limit).catch(() => 0), EXPIRE_BATCH, EXPIRE_BATCHES_PER_MINUTE);
  // Likewise for the log: settled rows arrive at up to the expiry's pace (a whole backlog fails at once, and
  // leaves the log together 7 days later), so one batch a minute would let the table grow without bound.
  const before = now - DELIVERY_LOG_DAYS * 86_400_000;
  const pruned = await inBatches((limit) => pruneDeliveries(deps.db, before, limit).catch(() => 0), PRUNE_BATCH, PRUNE_BATCHES_PER_MINUTE);
  return { enqueued, scheduled, expired, pruned };
}

/**
 * The queue consumer. Retries are the outbox's: an attempt the endpoint answered with an error writes the row's
 * next_attempt_at (exponential backoff) and sends a fresh message delayed until then; one that failed at the
 * endpoint holds the endpoint and sends none (the sweep picks its next try when the hold is over); either way the
 * message is acked. Chosen over message.retry({delaySeconds}):
 * a queue's max_retries (≤ 100) and delay (≤ 12 h) bound what it can carry, a message can be lost with an edge
 * deploy or a queue incident, and the sweep must find stuck rows anyway; with the database as the only state, the
 * message is a hint and the sweep a complete backstop. A message whose handling threw (database down) is retried
 * by the queue, and failing that the sweep picks the row up.
 */
/** ack/retry of a message whose batch has already returned (a send that went on under waitUntil) may throw: ignored. */
function settle(f: () => void): void {
  try {
    f();
  } catch {
    // the batch was already settled with the invocation
  }
}

export async function consumeWebhookBatch(batch: MessageBatch<WebhookMessage>, deps: WebhookQueueDeps): Promise<void> {
  const now = deps.now ?? Date.now;
  // Concurrently: one slow endpoint must not hold up the others' messages in the batch for its whole timeout; and
  // the batch itself returns after BATCH_WAIT_MS, so it does not hold up the next batch either (no user can slow
  // down another). A send still running then goes on under waitUntil, its row leased (the lease outlasts the send
  // timeout), and records its attempt as usual; its message counts as handled (acked with the batch), so if that
  // late part fails, the sweep brings the row back once the lease is over.
  const handled = eachAtMost(MAX_CONCURRENT_MESSAGES, batch.messages, async (message) => {
    try {
      const body = message.body;
      if (body.kind === "sweep") {
        await enqueueDueDeliveries(deps, now());
      } else {
        const result = await deliverOnce(deps, body.id, now());
        if (!result.done) {
          await deps.queue.send({ kind: "deliver", id: body.id }, { delaySeconds: Math.min(Math.ceil(result.retryInMs / 1000), 43_200) });
        }
        // The endpoint answered: its next due row goes now, not at the next sweep (a backlog drains at the
        // endpoint's own pace, one send at a time).
        if (result.next) await enqueueDueDeliveries(deps, now(), result.next);
      }
      settle(() => message.ack());
    } catch (err) {
      console.error("webhook message failed", loggable(err));
      settle(() => message.retry({ delaySeconds: 5 }));
    }
  });
  if (!deps.waitUntil) return void (await handled);
  deps.waitUntil(handled);
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([handled, new Promise<void>((resolve) => (timer = setTimeout(resolve, BATCH_WAIT_MS)))]);
  clearTimeout(timer);
}

/** Runs `fn` over `items`, never more than `limit` at once, in order of the items. */
async function eachAtMost<T>(limit: number, items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
