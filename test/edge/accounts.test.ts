import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import { hashPassword, needsRehash, PBKDF2_ITERATIONS, verifyPassword } from "../../db/passwords";
import { authenticateSession, SESSION_MAX_AGE_MS, SESSION_SLIDE_EVERY_MS } from "../../db/queries/sessions";
import { apiTokens, sessions, users } from "../../db/schema";
import { call, db, loginCookie, makeUser, signIn } from "./helpers";

async function tokenOf(s: { call: typeof call }, json: Record<string, unknown> = {}) {
  const res = await s.call("/api/tokens", { method: "POST", json: { name: "script", ...json } });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; token: string; scope: string; expiresAt: string | null };
}

describe("disabling an account", () => {
  it("ends the user's session and stops their API tokens at once, and enabling lets them sign in again", async () => {
    const admin = await signIn("admin");
    const user = await signIn();
    const { token } = await tokenOf(user);
    expect((await call("/api/me", { token })).status).toBe(200);

    const off = await admin.call(`/api/users/${user.id}/disable`, { method: "POST" });
    expect(off.status).toBe(200);
    expect(await off.json()).toMatchObject({ user: { id: user.id, disabledAt: expect.stringMatching(/Z$/) } });
    expect((await user.call("/api/me")).status).toBe(401);
    expect((await call("/api/me", { token })).status).toBe(401);
    const login = await call("/api/auth/login", { method: "POST", json: { email: user.email, password: user.password } });
    expect(login.status).toBe(403);
    expect(await login.json()).toMatchObject({ error: { code: "account_disabled" } });

    const on = await admin.call(`/api/users/${user.id}/enable`, { method: "POST" });
    expect(await on.json()).toMatchObject({ user: { disabledAt: null } });
    expect((await call("/api/me", { token })).status).toBe(200);
    expect(await loginCookie(user)).toMatch(/^vr_session=/);
  });

  it("is for admins only, refuses an admin's own account, and answers 404 for an unknown user", async () => {
    const admin = await signIn("admin");
    const user = await signIn();
    expect((await user.call(`/api/users/${admin.id}/disable`, { method: "POST" })).status).toBe(403);
    const self = await admin.call(`/api/users/${admin.id}/disable`, { method: "POST" });
    expect(self.status).toBe(409);
    expect(await self.json()).toMatchObject({ error: { code: "cannot_disable_self" } });
    expect((await admin.call(`/api/users/${newId()}/disable`, { method: "POST" })).status).toBe(404);
  });
});

describe("API token scope and expiry", () => {
  it("lets a read-only token read but refuses it with 403 on state-changing routes", async () => {
    const s = await signIn();
    const created = await tokenOf(s, { scope: "read" });
    expect(created.scope).toBe("read");
    expect((await call("/api/jobs", { token: created.token })).status).toBe(200);
    const post = await call("/api/tokens", { method: "POST", json: { name: "escalate" }, token: created.token });
    expect(post.status).toBe(403);
    expect(await post.json()).toMatchObject({ error: { code: "read_only_token" } });
    expect((await call(`/api/tokens/${created.id}`, { method: "DELETE", token: created.token })).status).toBe(403);
  });

  it("refuses an expired token with 401 and lists expiry and scope", async () => {
    const s = await signIn();
    const created = await tokenOf(s, { expiresInDays: 30 });
    expect(Date.parse(created.expiresAt!)).toBeGreaterThan(Date.now() + 29 * 24 * 3600_000);
    expect((await call("/api/me", { token: created.token })).status).toBe(200);
    await db.update(apiTokens).set({ expiresAt: Date.now() - 1 }).where(eq(apiTokens.id, created.id));
    const res = await call("/api/me", { token: created.token });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_token" } });
    const { tokens } = (await (await s.call("/api/tokens")).json()) as { tokens: { id: string; scope: string; expiresAt: string }[] };
    expect(tokens.find((t) => t.id === created.id)).toMatchObject({ scope: "full", expiresAt: expect.stringMatching(/Z$/) });
  });

  it("answers 400 for a bad scope or expiry", async () => {
    const s = await signIn();
    const scope = await s.call("/api/tokens", { method: "POST", json: { name: "x", scope: "admin" } });
    expect(await scope.json()).toMatchObject({ error: { field: "scope" } });
    const days = await s.call("/api/tokens", { method: "POST", json: { name: "x", expiresInDays: 0 } });
    expect(await days.json()).toMatchObject({ error: { field: "expiresInDays" } });
  });
});

describe("POST /api/me/password", () => {
  it("changes the password and ends the user's other sessions, keeping the one that made the change", async () => {
    const user = await makeUser();
    const here = await loginCookie(user);
    const elsewhere = await loginCookie(user);
    const res = await call("/api/me/password", {
      method: "POST",
      cookie: here,
      json: { currentPassword: user.password, newPassword: "a much longer new secret" },
    });
    expect(res.status).toBe(204);
    expect((await call("/api/me", { cookie: here })).status).toBe(200);
    expect((await call("/api/me", { cookie: elsewhere })).status).toBe(401);
    const old = await call("/api/auth/login", { method: "POST", json: { email: user.email, password: user.password } });
    expect(old.status).toBe(401);
    expect(await loginCookie({ email: user.email, password: "a much longer new secret" })).toMatch(/^vr_session=/);
  });

  it("refuses a wrong current password and a weak new one, changing nothing", async () => {
    const s = await signIn();
    const wrong = await s.call("/api/me/password", { method: "POST", json: { currentPassword: "nope", newPassword: "a much longer new secret" } });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: { code: "wrong_password", field: "currentPassword" } });
    for (const weak of ["short-pw", "password1234", "abcabcabcabcabc"]) {
      const res = await s.call("/api/me/password", { method: "POST", json: { currentPassword: s.password, newPassword: weak } });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { field: "newPassword" } });
    }
    expect(await loginCookie(s)).toMatch(/^vr_session=/);
  });
});

describe("own sessions", () => {
  it("lists the user's sessions with the current one marked, and revokes another one", async () => {
    const user = await makeUser();
    const here = await loginCookie(user);
    const elsewhere = await loginCookie(user);
    const res = await call("/api/me/sessions", { cookie: here, headers: { "user-agent": "test-agent" } });
    expect(res.status).toBe(200);
    const { sessions: list } = (await res.json()) as { sessions: { id: string; current: boolean; createdAt: string }[] };
    expect(list).toHaveLength(2);
    expect(list.filter((s) => s.current)).toHaveLength(1);
    const other = list.find((s) => !s.current)!;
    expect((await call(`/api/me/sessions/${other.id}`, { method: "DELETE", cookie: here })).status).toBe(204);
    expect((await call("/api/me", { cookie: elsewhere })).status).toBe(401);
    expect((await call("/api/me", { cookie: here })).status).toBe(200);
  });

  it("answers 404 for another user's session id", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const [bobs] = await db.select({ id: sessions.id }).from(sessions).where(eq(sessions.userId, bob.id));
    expect((await alice.call(`/api/me/sessions/${bobs!.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await bob.call("/api/me")).status).toBe(200);
  });
});

describe("sessions", () => {
  it("rotates the session on login: a new id, and the cookie the browser had no longer works", async () => {
    const user = await makeUser();
    const before = await loginCookie(user);
    const res = await call("/api/auth/login", { method: "POST", cookie: before, json: { email: user.email, password: user.password } });
    expect(res.status).toBe(200);
    const after = res.headers.get("set-cookie")!.split(";")[0]!;
    expect(after).not.toBe(before);
    expect((await call("/api/me", { cookie: before })).status).toBe(401);
    expect((await call("/api/me", { cookie: after })).status).toBe(200);
  });

  it("ends a session at its absolute lifetime even while it keeps being used", async () => {
    const user = await makeUser();
    const token = (await loginCookie(user)).split("=")[1]!;
    const [row] = await db.select().from(sessions).where(eq(sessions.userId, user.id));
    // Used every few days: the sliding expiry alone would never end it.
    let at = row!.createdAt;
    while (at + 3 * 24 * 3600_000 < row!.createdAt + SESSION_MAX_AGE_MS) {
      at += 3 * 24 * 3600_000;
      expect(await authenticateSession(db, token, at)).not.toBeNull();
    }
    expect(await authenticateSession(db, token, row!.createdAt + SESSION_MAX_AGE_MS + SESSION_SLIDE_EVERY_MS)).toBeNull();
  });

  it("uses the __Host- cookie prefix with Secure on https and reads it back", async () => {
    const user = await makeUser();
    const { exports } = await import("cloudflare:workers");
    const res = await exports.default.fetch(
      new Request("https://edge.test/api/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: user.email, password: user.password }),
      }),
    );
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^__Host-vr_session=vrs_/);
    expect(cookie).toMatch(/; Secure/i);
    expect(cookie).toMatch(/Path=\//);
    const me = await exports.default.fetch(new Request("https://edge.test/api/me", { headers: { cookie: cookie.split(";")[0]! } }));
    expect(me.status).toBe(200);
    // A plain-named cookie (as a subdomain or an http page could plant) is not accepted on https.
    const planted = await exports.default.fetch(new Request("https://edge.test/api/me", { headers: { cookie: `vr_session=${cookie.split(";")[0]!.split("=")[1]}` } }));
    expect(planted.status).toBe(401);
  });
});

describe("passwords", () => {
  it("refuses new passwords under 12 characters or on the common list when an admin creates an account", async () => {
    const admin = await signIn("admin");
    for (const password of ["elevenchars", "Password1234", "qwerty123456"]) {
      const res = await admin.call("/api/users", { method: "POST", json: { email: `p-${newId()}@test.example`, password } });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { field: "password" } });
    }
  });

  it("rehashes a weaker stored hash with today's iteration count on a successful login", async () => {
    const user = await makeUser();
    const weak = await weakHash(user.password, 1000);
    await db.update(users).set({ passwordHash: weak }).where(eq(users.id, user.id));
    expect(await loginCookie(user)).toMatch(/^vr_session=/);
    const [row] = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, user.id));
    expect(row!.passwordHash.split("$")[1]).toBe(String(PBKDF2_ITERATIONS));
    expect(await verifyPassword(user.password, row!.passwordHash)).toBe(true);
  });

  it("peppers hashes when a pepper is configured: unverifiable without it, and unpeppered hashes need a rehash", async () => {
    const pepper = "pepper-for-tests-0123456789";
    const peppered = await hashPassword("a long enough password", pepper);
    expect(peppered).toMatch(/^pbkdf2-sha256-hmac\$/);
    expect(await verifyPassword("a long enough password", peppered, pepper)).toBe(true);
    expect(await verifyPassword("a long enough password", peppered)).toBe(false);
    expect(await verifyPassword("a long enough password", peppered, "another-pepper-0123456789")).toBe(false);
    const plain = await hashPassword("a long enough password");
    expect(needsRehash(plain, pepper)).toBe(true);
    expect(needsRehash(plain)).toBe(false);
    expect(needsRehash(peppered, pepper)).toBe(false);
  });
});

/** A hash in the stored format at a lower iteration count, as an older release would have written it. */
async function weakHash(password: string, iterations: number): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, 256));
  const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
  return `pbkdf2-sha256$${iterations}$${b64(salt)}$${b64(bits)}`;
}
