import { Hono, type Context } from "hono";
import type { AppEnv } from "../env";
import {
  JobPage,
  JobsPage,
  LoginPage,
  RunnersPage,
  TokensPage,
  UploadPage,
  UsersPage,
  type PageContext,
} from "../ui/pages/pages";

function ctxOf(c: Context<AppEnv>): PageContext {
  const config = c.get("config");
  return { version: config.APP_VERSION, maxUploadBytes: config.MAX_UPLOAD_BYTES };
}

/**
 * HTML shells for the web UI. They hold no user data: the client module fetches everything from the JSON API
 * with the session cookie, so authorisation lives in one place (the API) and a 401 there sends the browser to
 * /login?next=… and back.
 */
export const pages = new Hono<AppEnv>()
  .use(async (c, next) => {
    await next();
    // Shells are tiny and must never show a previous user's nav after logout.
    c.header("Cache-Control", "no-store");
  })
  .get("/login", (c) => {
    const q = c.req.query();
    return c.html(LoginPage(ctxOf(c), q.expired ? "expired" : null));
  })
  .get("/", (c) => c.html(UploadPage(ctxOf(c))))
  .get("/jobs", (c) => c.html(JobsPage(ctxOf(c))))
  .get("/jobs/:id", (c) => c.html(JobPage(ctxOf(c), c.req.param("id"))))
  .get("/admin/runners", (c) => c.html(RunnersPage(ctxOf(c))))
  .get("/admin/users", (c) => c.html(UsersPage(ctxOf(c))))
  .get("/tokens", (c) => c.html(TokensPage(ctxOf(c))));
