import { Hono } from "hono";
import { changePassword } from "../../db/queries/change-password";
import { listSessions, revokeSession } from "../../db/queries/sessions";
import type { AppEnv } from "../env";
import { deviceToken, requireUser, sessionToken, setDeviceCookie } from "../lib/auth";
import { ChangePasswordBody, IdParam } from "../lib/schemas";
import { validate } from "../lib/validate";

const iso = (ms: number) => new Date(ms).toISOString();

/** The signed-in account: who am I, change my password, my sessions. */
export const me = new Hono<AppEnv>()
  .use(requireUser)
  .get("/", (c) => c.json({ user: c.get("user") }))
  .post("/password", validate("json", ChangePasswordBody), async (c) => {
    const body = c.req.valid("json");
    const changed = await changePassword(
      c.get("db"),
      { ...body, userId: c.get("user").id, keepToken: sessionToken(c), deviceToken: deviceToken(c), pepper: c.get("config").PASSWORD_PEPPER },
      Date.now(),
    );
    if (changed.deviceToken) setDeviceCookie(c, changed.deviceToken);
    return c.body(null, 204);
  })
  .get("/sessions", async (c) => {
    const rows = await listSessions(c.get("db"), { userId: c.get("user").id, currentToken: sessionToken(c) }, Date.now());
    return c.json({
      sessions: rows.map((s) => ({ ...s, createdAt: iso(s.createdAt), lastSeenAt: iso(s.lastSeenAt), expiresAt: iso(s.expiresAt) })),
    });
  })
  .delete("/sessions/:id", validate("param", IdParam), async (c) => {
    await revokeSession(c.get("db"), { userId: c.get("user").id, id: c.req.valid("param").id });
    return c.body(null, 204);
  });
