import { Hono, type Context } from "hono";
import { UnauthorizedError } from "../../db/errors";
import { listRunners } from "../../db/queries/runners";
import type { AppEnv, SessionUser } from "../env";
import { requireUser } from "../lib/auth";
import { RUNNER_RETENTION_MS } from "../lifecycle/prune-runners";
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

/** The signed-in user for a page that renders data server-side, or null (no/expired session: go to login). */
async function pageUser(c: Context<AppEnv>): Promise<SessionUser | null> {
  try {
    await requireUser(c, async () => {});
    return c.get("user");
  } catch (err) {
    if (err instanceof UnauthorizedError) return null;
    throw err;
  }
}

function loginRedirect(c: Context<AppEnv>) {
  const url = new URL(c.req.url);
  return c.redirect(`/login?${new URLSearchParams({ next: url.pathname + url.search }).toString()}`, 303);
}

function ctxOf(c: Context<AppEnv>): PageContext {
  const config = c.get("config");
  return { version: config.APP_VERSION, maxUploadBytes: config.MAX_UPLOAD_BYTES };
}

/**
 * HTML shells for the web UI. They hold no user data: the client module fetches everything from the JSON API
 * with the session cookie, so authorisation lives in one place (the API) and a 401 there sends the browser to
 * /login?next=… and back. The one exception is the runners page, rendered from the runners table because the
 * API has no runners endpoint; it checks the session itself.
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
  .get("/admin/runners", async (c) => {
    const user = await pageUser(c);
    if (!user) return loginRedirect(c);
    if (user.role !== "admin") return c.html(RunnersPage(ctxOf(c), null, Date.now()), 403);
    // The same window the lifecycle rule keeps rows for, so the page does not depend on when the rule last ran.
    const now = Date.now();
    const rows = await listRunners(c.get("db"), now - RUNNER_RETENTION_MS);
    return c.html(RunnersPage(ctxOf(c), rows, now));
  })
  .get("/admin/users", (c) => c.html(UsersPage(ctxOf(c))))
  .get("/tokens", (c) => c.html(TokensPage(ctxOf(c))));
