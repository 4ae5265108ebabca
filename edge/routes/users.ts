import { Hono, type MiddlewareHandler } from "hono";
import { resetPassword } from "../../db/queries/reset-password";
import { createUser, listUsers, setUserDisabled, type UserRow } from "../../db/queries/users";
import type { AppEnv } from "../env";
import { refuseExpiringToken, requireAdmin, requireUser } from "../lib/auth";
import { CreateUserBody, IdParam, SetUserPasswordBody } from "../lib/schemas";
import { validate } from "../lib/validate";

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());
const present = (u: UserRow) => ({ id: u.id, email: u.email, role: u.role, createdAt: iso(u.createdAt)!, disabledAt: iso(u.disabledAt) });

/** An account never expires, so an expiring token does not make or re-open one. */
const lastingCredential: MiddlewareHandler<AppEnv> = async (c, next) => {
  refuseExpiringToken(c, "create or re-enable accounts or set their passwords");
  await next();
};

/**
 * Accounts are created, listed, disabled and re-enabled by admins only (no public sign-up); an admin sets a new
 * password for a user who lost theirs (and a lost admin password is reset from a shell: user:create --reset).
 */
export const users = new Hono<AppEnv>()
  .use(requireUser, requireAdmin)
  .post("/", lastingCredential, validate("json", CreateUserBody), async (c) => {
    const input = { ...c.req.valid("json"), pepper: c.get("config").PASSWORD_PEPPER };
    const { id, email, role } = await createUser(c.get("db"), input, Date.now(), { answerRepeat: true });
    return c.json({ user: { id, email, role } }, 201);
  })
  .get("/", async (c) => {
    const rows = await listUsers(c.get("db"));
    return c.json({ users: rows.map(present) });
  })
  .post("/:id/disable", validate("param", IdParam), async (c) => {
    const input = { actorId: c.get("user").id, userId: c.req.valid("param").id, disabled: true };
    return c.json({ user: present(await setUserDisabled(c.get("db"), input, Date.now())) });
  })
  .post("/:id/enable", lastingCredential, validate("param", IdParam), async (c) => {
    const input = { actorId: c.get("user").id, userId: c.req.valid("param").id, disabled: false };
    return c.json({ user: present(await setUserDisabled(c.get("db"), input, Date.now())) });
  })
  // A password set this way is a credential that outlives the token: no expiring token may set one.
  .post("/:id/password", lastingCredential, validate("param", IdParam), validate("json", SetUserPasswordBody), async (c) => {
    const { password } = c.req.valid("json");
    const input = { actorId: c.get("user").id, userId: c.req.valid("param").id, password, pepper: c.get("config").PASSWORD_PEPPER };
    await resetPassword(c.get("db"), input);
    return c.body(null, 204);
  });
