import { Hono } from "hono";
import { createUser, listUsers } from "../../db/queries/users";
import type { AppEnv } from "../env";
import { requireAdmin, requireUser } from "../lib/auth";
import { CreateUserBody } from "../lib/schemas";
import { validate } from "../lib/validate";

/** Accounts are created by admins only (no public sign-up). */
export const users = new Hono<AppEnv>()
  .use(requireUser, requireAdmin)
  .post("/", validate("json", CreateUserBody), async (c) => {
    const { id, email, role } = await createUser(c.get("db"), c.req.valid("json"), Date.now());
    return c.json({ user: { id, email, role } }, 201);
  })
  .get("/", async (c) => {
    const rows = await listUsers(c.get("db"));
    return c.json({ users: rows.map((u) => ({ ...u, createdAt: new Date(u.createdAt).toISOString() })) });
  });
