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

  describe("with an Idempotency-Key", () => {
    const post = (s: { call: typeof call }, key: string, json: Record<string, unknown> = { name: "deploy" }) =>
      s.call("/api/tokens", { method: "POST", json, headers: { "Idempotency-Key": key } });

    it("gives a retry after a lost answer the same token with a new secret: one token listed, only the new secret works", async () => {
      const s = await signIn();
      const first = await post(s, "token-key-1");
      expect(first.status).toBe(201);
      // A secret shown once is not kept by the browser or a proxy.
      expect(first.headers.get("Cache-Control")).toBe("no-store");
      const lost = (await first.json()) as Created;
      const again = await post(s, "token-key-1");
      expect(again.status).toBe(201);
      expect(again.headers.get("Idempotent-Replayed")).toBe("true");
      const kept = (await again.json()) as Created;
      expect(kept.id).toBe(lost.id);
      expect(kept.token).not.toBe(lost.token);
      const { tokens } = (await (await s.call("/api/tokens")).json()) as { tokens: { id: string }[] };
      expect(tokens.map((t) => t.id)).toEqual([lost.id]);
      expect((await call("/api/me", { token: lost.token })).status).toBe(401);
      expect((await call("/api/me", { token: kept.token })).status).toBe(200);
    });

    it("never replaces the secret of a token already used (409 token_already_used): its answer was not lost", async () => {
      const s = await signIn();
      const made = (await (await post(s, "token-key-used")).json()) as Created;
      expect((await call("/api/me", { token: made.token })).status).toBe(200);
      const res = await post(s, "token-key-used");
      expect(res.status).toBe(409);
      expect(await res.json()).toMatchObject({ error: { code: "token_already_used" } });
      expect((await call("/api/me", { token: made.token })).status).toBe(200);
      const { tokens } = (await (await s.call("/api/tokens")).json()) as { tokens: unknown[] };
      expect(tokens).toHaveLength(1);
    });

    it("refuses the same key asking for another token (422 idempotency_key_reused) and creates nothing", async () => {
      const s = await signIn();
      const made = (await (await post(s, "token-key-reused")).json()) as Created;
      for (const json of [{ name: "other" }, { name: "deploy", scope: "read" }, { name: "deploy", expiresInDays: 7 }]) {
        const res = await post(s, "token-key-reused", json);
        expect(res.status).toBe(422);
        expect(await res.json()).toMatchObject({ error: { code: "idempotency_key_reused" } });
      }
      const { tokens } = (await (await s.call("/api/tokens")).json()) as { tokens: unknown[] };
      expect(tokens).toHaveLength(1);
      expect((await call("/api/me", { token: made.token })).status).toBe(200);
    });

    it("keeps keys per user: another user's same key makes that user's own token and leaves the first one working", async () => {
      const alice = await signIn();
      const bob = await signIn();
      const a = (await (await post(alice, "shared-token-key")).json()) as Created;
      const res = await post(bob, "shared-token-key");
      expect(res.status).toBe(201);
      expect(res.headers.get("Idempotent-Replayed")).toBeNull();
      const b = (await res.json()) as Created;
      expect(b.id).not.toBe(a.id);
      expect(await (await call("/api/me", { token: a.token })).json()).toMatchObject({ user: { id: alice.id } });
      expect(await (await call("/api/me", { token: b.token })).json()).toMatchObject({ user: { id: bob.id } });
    });

    it("never reissues to an expiring API token a token that outlives it (403 expiring_token); signed in, the retry still works", async () => {
      const s = await signIn();
      const short = (await (await s.call("/api/tokens", { method: "POST", json: { name: "ci", expiresInDays: 1 } })).json()) as Created;
      const lasting = (await (await post(s, "token-key-lasting")).json()) as Created;
      const res = await call("/api/tokens", { method: "POST", token: short.token, json: { name: "deploy" }, headers: { "Idempotency-Key": "token-key-lasting" } });
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ error: { code: "expiring_token" } });
      // Refused before anything changed: the secret the first answer carried still works, and the owner can still retry.
      const again = await post(s, "token-key-lasting");
      expect(again.status).toBe(201);
      expect(((await again.json()) as Created).id).toBe(lasting.id);
    });

    it("answers 400 for a malformed key and creates nothing", async () => {
      const s = await signIn();
      const res = await post(s, "bad key with spaces");
      expect(res.status).toBe(400);
      const { tokens } = (await (await s.call("/api/tokens")).json()) as { tokens: unknown[] };
      expect(tokens).toEqual([]);
    });
  });
});
