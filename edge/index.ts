import { createApp } from "./app";
import { dbFor } from "./lib/db";
import { loadConfig, type Bindings } from "./env";
import { runLifecycle } from "./lifecycle";
import { consumeWebhookBatch, sweepWebhookDeliveries, type WebhookMessage } from "./lib/webhooks/queue";

const app = createApp();

export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    const config = loadConfig(env);
    const db = dbFor(config);
    ctx.waitUntil(runLifecycle({ db, bucket: env.BUCKET, config }, controller.scheduledTime));
    // Beside the lifecycle rules, not after them: a long rule (a storage-cap backlog) held every user's webhooks for
    // its whole run, and a tick the platform ended mid-rule sent none. The events the rules write go out with the
    // sweep this one schedules SWEEP_EVERY_SECONDS later.
    ctx.waitUntil(sweepWebhookDeliveries({ db, queue: env.WEBHOOK_QUEUE }, Date.now()));
  },
  async queue(batch, env, ctx) {
    const config = loadConfig(env);
    await consumeWebhookBatch(batch as MessageBatch<WebhookMessage>, {
      db: dbFor(config),
      queue: env.WEBHOOK_QUEUE,
      policy: { allowLocalHttp: config.WEBHOOKS_ALLOW_LOCAL_HTTP },
      // A slow endpoint's send goes on after the batch returns, so the next batch is not held up behind it.
      waitUntil: (p) => ctx.waitUntil(p),
    });
  },
} satisfies ExportedHandler<Bindings>;
