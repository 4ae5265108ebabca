import { Hono } from "hono";
import { createApiToken, deleteApiToken, listApiTokens } from "../../db/queries/tokens";
import type { AppEnv } from "../env";
import { requireUser } from "../lib/auth";
import { CreateTokenBody } from "../lib/schemas";
import { validate } from "../lib/validate";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export const tokens = new Hono<AppEnv>()
  .use(requireUser)
  .post("/", validate("json", CreateTokenBody), async (c) => {
    const { name } = c.req.valid("json");
    const created = await createApiToken(c.get("db"), { userId: c.get("user").id, name }, Date.now());
    return c.json({ id: created.id, name: created.name, token: created.token }, 201);
  })
  .get("/", async (c) => {
    const rows = await listApiTokens(c.get("db"), c.get("user").id);
    return c.json({
      tokens: rows.map((t) => ({ id: t.id, name: t.name, createdAt: iso(t.createdAt)!, lastUsedAt: iso(t.lastUsedAt) })),
    });
  })
  .delete("/:id", async (c) => {
    await deleteApiToken(c.get("db"), { userId: c.get("user").id, id: c.req.param("id") });
    return c.body(null, 204);
  });
