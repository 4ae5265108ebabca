import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { dbFor } from "./lib/db";
import { onError, onNotFound } from "./lib/errors";
import { loadConfig, type AppEnv } from "./env";
import { health } from "./routes/health";
import { internal } from "./routes/internal";
import { drainUnreadBodies } from "./lib/lingering";
import { privateApiAnswers, securityHeaders } from "./lib/security";
import { auth } from "./routes/auth";
import { jobs } from "./routes/jobs";
import { limits } from "./routes/limits";
import { jsonBodyLimit } from "./lib/validate";
import { accountPage } from "./routes/account-page";
import { me } from "./routes/me";
import { openapi } from "./routes/openapi";
import { tokens } from "./routes/tokens";
import { uploads } from "./routes/uploads";
import { users } from "./routes/users";
import { pages } from "./routes/pages";
import { kickWebhookDeliveries, webhooks } from "./routes/webhooks";
import { webhooksPage } from "./routes/webhooks-page";

/** Builds the Hono app: shared middleware, then one router per resource. */
export function createApp() {
  return new Hono<AppEnv>()
    .use(drainUnreadBodies())
    .use(requestId())
    .use(securityHeaders())
    .use(async (c, next) => {
      const config = loadConfig(c.env);
      c.set("config", config);
      c.set("db", dbFor(config));
      await next();
    })
    .use("/api/*", privateApiAnswers())
    .use("/api/*", jsonBodyLimit())
    .route("/api/health", health)
    .route("/api/auth", auth)
    .route("/api/me", me)
    .route("/api/users", users)
    .route("/api/tokens", tokens)
    .route("/api/uploads", uploads)
    .use("/api/jobs/*", kickWebhookDeliveries())
    .route("/api/jobs", jobs)
    .route("/api/webhooks", webhooks)
    .route("/api/limits", limits)
    .route("/api/openapi.json", openapi)
    .route("/internal", internal)
    .route("/account", accountPage)
    .route("/webhooks", webhooksPage)
    .route("/", pages)
    .onError(onError)
    .notFound(onNotFound);
}

export type App = ReturnType<typeof createApp>;
