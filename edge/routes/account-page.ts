import { Hono } from "hono";
import type { AppEnv } from "../env";
import { AccountPage } from "../ui/pages/account";

/** HTML shell of /account; like the other shells it holds no user data (the client reads /api/me/*). */
export const accountPage = new Hono<AppEnv>().get("/", (c) => {
  c.header("Cache-Control", "no-store");
  return c.html(AccountPage({ version: c.get("config").APP_VERSION, maxUploadBytes: c.get("config").MAX_UPLOAD_BYTES }));
});
