import { Hono } from "hono";
import { reissueApiToken, tokenFingerprint } from "../../db/queries/reissue-api-token";
import { createApiToken, deleteApiToken, listApiTokens } from "../../db/queries/tokens";
import type { AppEnv } from "../env";
import { requireUser } from "../lib/auth";
import { idempotencyKeyOf, REPLAYED_HEADER } from "../lib/idempotency";
import { CreateTokenBody } from "../lib/schemas";
import { validate } from "../lib/validate";

const DAY_MS = 24 * 60 * 60 * 1000;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export const tokens = new Hono<AppEnv>()
  .use(requireUser)
  .post("/", validate("json", CreateTokenBody), async (c) => {
    const { name, scope, expiresInDays } = c.req.valid("json");
    const now = Date.now();
    // A token made with an expiring token expires no later than it: a leaked short-lived token cannot mint a
    // permanent one.
    const caller = c.get("tokenExpiresAt") ?? null;
    const asked = expiresInDays === null ? null : now + expiresInDays * DAY_MS;
    const expiresAt = caller === null ? asked : Math.min(asked ?? caller, caller);
    const key = idempotencyKeyOf(c.req.raw);
    const [db, userId] = [c.get("db"), c.get("user").id];
    const fingerprint = tokenFingerprint({ name, scope, expiresInDays });
    // A retry after a lost answer gets the same token with a new secret, not a second token nobody ever saw. Unlike
    // createOnce, a create that collides with a twin holding the key answers 409 instead of reissuing: reissuing
    // would void the secret in the twin's answer, which may be the one the client reads.
    const earlier = key === null ? null : await reissueApiToken(db, { userId, key, fingerprint, notAfter: caller }, now);
    const t = earlier ?? (await createApiToken(db, { userId, name, scope, expiresAt, idempotencyKey: key, fingerprint }, now));
    if (earlier) c.header(REPLAYED_HEADER, "true");
    return c.json({ id: t.id, name: t.name, scope: t.scope, expiresAt: iso(t.expiresAt), token: t.token }, 201);
  })
  .get("/", async (c) => {
    const rows = await listApiTokens(c.get("db"), c.get("user").id);
    return c.json({
      tokens: rows.map((t) => ({
        id: t.id,
        name: t.name,
        scope: t.scope,
        createdAt: iso(t.createdAt)!,
        lastUsedAt: iso(t.lastUsedAt),
        expiresAt: iso(t.expiresAt),
      })),
    });
  })
  .delete("/:id", async (c) => {
    await deleteApiToken(c.get("db"), { userId: c.get("user").id, id: c.req.param("id") });
    return c.body(null, 204);
  });
