import { createApp } from "./app";
import { dbFor } from "./lib/db";
import { loadConfig, type Bindings } from "./env";
import { runLifecycle } from "./lifecycle";

const app = createApp();

export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    const config = loadConfig(env);
    ctx.waitUntil(runLifecycle({ db: dbFor(config), bucket: env.BUCKET, config }, controller.scheduledTime));
  },
} satisfies ExportedHandler<Bindings>;
