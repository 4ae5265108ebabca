import { loggable } from "../../db/errors";
import { Hono } from "hono";
import { pingDb } from "../../db/queries/health";
import type { AppEnv } from "../env";

export const health = new Hono<AppEnv>().get("/", async (c) => {
  const version = c.get("config").APP_VERSION;
  try {
    await pingDb(c.get("db"));
    return c.json({ ok: true, db: "ok", version });
  } catch (err) {
    console.error(`[${c.get("requestId")}] health: database unreachable`, loggable(err));
    return c.json({ ok: false, db: "error", version }, 503);
  }
});
