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
    const lifecycle = runLifecycle({ db, bucket: env.BUCKET, config }, controller.scheduledTime);
    // After the lifecycle rules: the jobs they finished have just written their webhook events.
    ctx.waitUntil(lifecycle.finally(() => sweepWebhookDeliveries({ db, queue: env.WEBHOOK_QUEUE }, Date.now())));
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
