import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { apiTokens } from "../../db/schema";
import { call, db, signIn } from "./helpers";

interface Created {
  id: string;
  name: string;
  token: string;
}

describe("API tokens", () => {
  it("creates a token shown once, stored hashed, that authenticates as Bearer", async () => {
    const s = await signIn();
    const res = await s.call("/api/tokens", { method: "POST", json: { name: "laptop" } });
    expect(res.status).toBe(201);
    const created = (await res.json()) as Created;
    expect(created).toMatchObject({ name: "laptop" });
    expect(created.token).toMatch(/^vrt_/);
    const [row] = await db.select().from(apiTokens).where(eq(apiTokens.id, created.id));
    expect(row!.tokenHash).not.toContain(created.token);

    const me = await call("/api/me", { token: created.token });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ user: { id: s.id } });

    const list = await s.call("/api/tokens");
    const { tokens } = (await list.json()) as { tokens: Record<string, unknown>[] };
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ id: created.id, name: "laptop" });
    expect(tokens[0]!.lastUsedAt).toMatch(/Z$/);
    expect(JSON.stringify(tokens)).not.toContain(created.token);
  });

  it("never lets an expiring token mint one that outlives it: the new token expires no later than its maker", async () => {
    const s = await signIn();
    const short = (await (await s.call("/api/tokens", { method: "POST", json: { name: "ci", expiresInDays: 1 } })).json()) as Created & { expiresAt: string };
    for (const expiresInDays of [null, 30]) {
      const res = await call("/api/tokens", { method: "POST", token: short.token, json: { name: "minted", expiresInDays } });
      expect(res.status).toBe(201);
      expect(((await res.json()) as { expiresAt: string | null }).expiresAt).toBe(short.expiresAt);
    }
    // A non-expiring token (or a session) may still make one that never expires.
    const lasting = (await (await s.call("/api/tokens", { method: "POST", json: { name: "server" } })).json()) as Created;
    const res = await call("/api/tokens", { method: "POST", token: lasting.token, json: { name: "minted", expiresInDays: null } });
    expect(((await res.json()) as { expiresAt: string | null }).expiresAt).toBeNull();
  });

  it("revokes a token so it stops working", async () => {
    const s = await signIn();
    const created = (await (await s.call("/api/tokens", { method: "POST", json: { name: "ci" } })).json()) as Created;
    expect((await s.call(`/api/tokens/${created.id}`, { method: "DELETE" })).status).toBe(204);
    const res = await call("/api/me", { token: created.token });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_token" } });
    expect((await s.call(`/api/tokens/${created.id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("does not let one user see or revoke another user's token", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const created = (await (await alice.call("/api/tokens", { method: "POST", json: { name: "a" } })).json()) as Created;
    expect((await bob.call(`/api/tokens/${created.id}`, { method: "DELETE" })).status).toBe(404);
    const { tokens } = (await (await bob.call("/api/tokens")).json()) as { tokens: unknown[] };
    expect(tokens).toEqual([]);
    expect((await call("/api/me", { token: created.token })).status).toBe(200);
  });

  it("answers 400 naming the field for an empty name", async () => {
    const s = await signIn();
    const res = await s.call("/api/tokens", { method: "POST", json: { name: "   " } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { field: "name" } });
  });

  it("answers 401 without a session, with a malformed header and with the runner token; 403 cross-origin", async () => {
    expect((await call("/api/tokens")).status).toBe(401);
    expect((await call("/api/tokens", { headers: { authorization: "Basic abc" } })).status).toBe(401);
    expect((await call("/api/tokens", { token: env.RUNNER_TOKEN })).status).toBe(401);
    const s = await signIn();
    const res = await s.call("/api/tokens", { method: "POST", json: { name: "x" }, origin: "https://evil.example" });
    expect(res.status).toBe(403);
  });
});
