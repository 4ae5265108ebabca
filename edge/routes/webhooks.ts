import { Hono, type Context, type MiddlewareHandler } from "hono";
import { loggable, UnprocessableError, ValidationError } from "../../db/errors";
import {
  createTestDelivery,
  createWebhook,
  deleteWebhook,
  findWebhookByIdempotencyKey,
  listDeliveries,
  listWebhooks,
  redeliverDelivery,
  rotateWebhookSecret,
  updateWebhook,
  WEBHOOK_KEY_REPLAY_MS,
  webhookFingerprint,
  type DeliveryRow,
} from "../../db/queries/webhooks";
import type { AppEnv } from "../env";
import { refuseExpiringToken, requireUser } from "../lib/auth";
import { createOnce, idempotencyKeyOf, REPLAYED_HEADER } from "../lib/idempotency";
import { CreateWebhookBody, DeliveryParams, IdParam, RotateWebhookSecretBody, UpdateWebhookBody } from "../lib/schemas";
import { readOptionalJson, validate } from "../lib/validate";
import { checkWebhookUrl } from "../lib/webhooks/address";
import { enqueueDueDeliveries, type WebhookMessage } from "../lib/webhooks/queue";

const DELIVERY_LOG_LIMIT = 100;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function presentDelivery(d: DeliveryRow) {
  return {
    id: d.id,
    event: d.event,
    jobId: d.jobId,
    status: d.status,
    attempts: d.attempts,
    occurredAt: iso(d.occurredAt)!,
    nextAttemptAt: d.status === "pending" ? iso(d.nextAttemptAt) : null,
    lastAttemptAt: iso(d.lastAttemptAt),
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    deliveredAt: iso(d.deliveredAt),
  };
}

/** The endpoint URL in its one spelling, or a 400 naming why it is refused (checked again at every attempt). */
function allowedUrl(c: Context<AppEnv>, url: string): string {
  const verdict = checkWebhookUrl(url, { allowLocalHttp: c.get("config").WEBHOOKS_ALLOW_LOCAL_HTTP });
  if (!verdict.ok) throw new ValidationError(verdict.message, "url", verdict.code);
  return verdict.url;
}

/**
 * A repeat of a create's Idempotency-Key answers its webhook only within WEBHOOK_KEY_REPLAY_MS (the answer carries
 * the secret) and only for the same request: the same key asking for another url or events is a client bug, not a
 * retry. Compared with what the first request asked, so a retry still replays after the webhook was edited.
 */
function assertReplayable(w: { createdAt: number; url: string; events: string[]; fingerprint: string | null }, asked: string, now: number): void {
  if (now - w.createdAt > WEBHOOK_KEY_REPLAY_MS) {
    throw new UnprocessableError("idempotency_key_expired", "This Idempotency-Key created a webhook more than 24 hours ago; use a new key");
  }
  if ((w.fingerprint ?? webhookFingerprint(w.url, w.events)) !== asked) {
    throw new UnprocessableError("idempotency_key_reused", "This Idempotency-Key already created a webhook with another url or events; use a new key");
  }
}

/**
 * A webhook keeps sending the owner's job events (file names, reasons) to its address, and its secret keeps signing
 * what the owner's receiver trusts, after the token that set them expired.
 */
const WEBHOOK_ADDRESS = "create a webhook or change its address";
const WEBHOOK_SECRET = "rotate a webhook's secret";

export const webhooks = new Hono<AppEnv>()
  .use(requireUser)
  .post("/", validate("json", CreateWebhookBody), async (c) => {
    refuseExpiringToken(c, WEBHOOK_ADDRESS);
    const { url, events } = c.req.valid("json");
    const endpoint = allowedUrl(c, url);
    const key = idempotencyKeyOf(c.req.raw);
    const [db, userId] = [c.get("db"), c.get("user").id];
    const { value: w, replayed } = await createOnce(
      { key },
      () => (key === null ? Promise.resolve(null) : findWebhookByIdempotencyKey(db, { userId, key })),
      () => createWebhook(db, { userId, url: endpoint, events, idempotencyKey: key }, Date.now()),
    );
    if (replayed) {
      assertReplayable(w, webhookFingerprint(endpoint, events), Date.now());
      c.header(REPLAYED_HEADER, "true");
    }
    return c.json({ id: w.id, url: w.url, events: w.events, createdAt: iso(w.createdAt)!, secret: w.secret }, 201);
  })
  .get("/", async (c) => {
    const rows = await listWebhooks(c.get("db"), c.get("user").id);
    return c.json({ webhooks: rows.map((w) => ({ id: w.id, url: w.url, events: w.events, createdAt: iso(w.createdAt)! })) });
  })
  .patch("/:id", validate("param", IdParam), validate("json", UpdateWebhookBody), async (c) => {
    const { url, events } = c.req.valid("json");
    if (url !== undefined) refuseExpiringToken(c, WEBHOOK_ADDRESS);
    const input = { userId: c.get("user").id, id: c.req.valid("param").id, url: url === undefined ? undefined : allowedUrl(c, url), events };
    const w = await updateWebhook(c.get("db"), input, Date.now());
    return c.json({ id: w.id, url: w.url, events: w.events, createdAt: iso(w.createdAt)! });
  })
  .delete("/:id", validate("param", IdParam), async (c) => {
    await deleteWebhook(c.get("db"), { userId: c.get("user").id, id: c.req.valid("param").id });
    return c.body(null, 204);
  })
  .post("/:id/rotate-secret", validate("param", IdParam), async (c) => {
    refuseExpiringToken(c, WEBHOOK_SECRET);
    const { id } = c.req.valid("param");
    const { keepPreviousSeconds } = await readOptionalJson(c.req.raw, RotateWebhookSecretBody);
    const input = { userId: c.get("user").id, webhookId: id, keepPreviousMs: keepPreviousSeconds * 1000 };
    const rotated = await rotateWebhookSecret(c.get("db"), input, Date.now());
    return c.json({ id, secret: rotated.secret, previousSecretsValidUntil: iso(rotated.previousSecretsValidUntil) });
  })
  .get("/:id/deliveries", validate("param", IdParam), async (c) => {
    const rows = await listDeliveries(c.get("db"), { userId: c.get("user").id, webhookId: c.req.valid("param").id, limit: DELIVERY_LOG_LIMIT });
    return c.json({ deliveries: rows.map(presentDelivery) });
  })
  .post("/:id/test", validate("param", IdParam), async (c) => {
    const id = await createTestDelivery(c.get("db"), { userId: c.get("user").id, webhookId: c.req.valid("param").id }, Date.now());
    await enqueueOrLeaveToSweep(c.env.WEBHOOK_QUEUE, id);
    return c.json({ id, status: "pending" as const }, 202);
  })
  .post("/:id/deliveries/:deliveryId/redeliver", validate("param", DeliveryParams), async (c) => {
    const { id, deliveryId } = c.req.valid("param");
    await redeliverDelivery(c.get("db"), { userId: c.get("user").id, webhookId: id, deliveryId }, Date.now());
    await enqueueOrLeaveToSweep(c.env.WEBHOOK_QUEUE, deliveryId);
    return c.json({ id: deliveryId, status: "pending" as const }, 202);
  });

/**
 * Sends a delivery the request just committed as pending to the queue, for a send within a second. A queue that
 * refuses it changes nothing the user asked for: the row is pending, and the outbox sweep (every few seconds)
 * enqueues it. Answering that with an error made the user retry work that was done: a second test event, or a
 * redelivery refused with 409 delivery_pending.
 */
async function enqueueOrLeaveToSweep(queue: Queue<WebhookMessage>, id: string): Promise<void> {
  try {
    await queue.send({ kind: "deliver", id });
  } catch (err) {
    console.error("webhook enqueue failed; the sweep sends it", loggable(err));
  }
}

/**
 * After a state-changing job request the edge may just have written webhook events (a queued job cancelled, a
 * pause, a cancel its runners settled within the wait): enqueue them now instead of at the next sweep. Only the
 * requester's endpoints: a request that changed nothing (a second pause, a replay) still kicks, and a kick over
 * every user's pending endpoints made one client's loop a write over everyone's backlog per request. Another
 * owner's events (an admin's cancel) wait for the sweep, seconds away. Runs after the response (waitUntil); a
 * failure only leaves them to the sweep.
 */
export function kickWebhookDeliveries(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    if (c.req.method === "GET" || c.req.method === "HEAD" || c.res.status >= 400) return;
    let ctx: ExecutionContext;
    try {
      ctx = c.executionCtx;
    } catch {
      return;
    }
    ctx.waitUntil(
      enqueueDueDeliveries({ db: c.get("db"), queue: c.env.WEBHOOK_QUEUE }, Date.now(), { userId: c.get("user").id }).catch((err) =>
        console.error("webhook kick failed", loggable(err)),
      ),
    );
  };
}
