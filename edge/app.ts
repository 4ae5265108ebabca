import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { dbFor } from "./lib/db";
import { onError, onNotFound } from "./lib/errors";
import { loadConfig, type AppEnv } from "./env";
import { health } from "./routes/health";
import { pages } from "./routes/pages";

/** Builds the Hono app: shared middleware, then one router per resource. */
export function createApp() {
  return new Hono<AppEnv>()
    .use(requestId())
    .use(async (c, next) => {
      const config = loadConfig(c.env);
      c.set("config", config);
      c.set("db", dbFor(config));
      await next();
    })
    .route("/api/health", health)
    .route("/", pages)
    .onError(onError)
    .notFound(onNotFound);
}

export type App = ReturnType<typeof createApp>;
