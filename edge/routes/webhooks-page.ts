import { Hono } from "hono";
import type { AppEnv } from "../env";
import { WebhooksPage } from "../ui/pages/webhooks";

/** HTML shell of /webhooks; holds no user data (the client reads /api/webhooks). */
export const webhooksPage = new Hono<AppEnv>().get("/", (c) => {
  c.header("Cache-Control", "no-store");
  return c.html(WebhooksPage({ version: c.get("config").APP_VERSION, maxUploadBytes: c.get("config").MAX_UPLOAD_BYTES }));
});
