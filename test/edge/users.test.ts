import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { newId } from "../../db/ids";
import { call, loginCookie, onDatabaseRequest, signIn } from "./helpers";

const newEmail = () => `new-${newId()}@test.example`;

describe("POST /api/users", () => {
  it("lets an admin create an account that can then sign in", async () => {
    const admin = await signIn("admin");
    const email = newEmail();
    const res = await admin.call("/api/users", { method: "POST", json: { email, password: "long enough pw" } });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { user: { id: string; email: string; role: string } };
    expect(body.user).toMatchObject({ email, role: "user" });
    expect(await loginCookie({ email, password: "long enough pw" })).toMatch(/^vr_session=/);
  });

  it("refuses to create or re-enable an account with an expiring API token (403 expiring_token, nothing created), and allows it with a lasting one", async () => {
    const admin = await signIn("admin");
    const token = async (expiresInDays: number | null) =>
      ((await (await admin.call("/api/tokens", { method: "POST", json: { name: "t", expiresInDays } })).json()) as { token: string }).token;
    const email = newEmail();
    const refused = await call("/api/users", { method: "POST", token: await token(1), json: { email, password: "long enough pw", role: "admin" } });
    expect([refused.status, await refused.json()]).toMatchObject([403, { error: { code: "expiring_token" } }]);
    const listed = (await (await admin.call("/api/users")).json()) as { users: { email: string }[] };
    expect(listed.users.map((u) => u.email)).not.toContain(email);
    const made = await call("/api/users", { method: "POST", token: await token(null), json: { email, password: "long enough pw" } });
    expect(made.status).toBe(201);
    // Nor may it re-enable a disabled account (a way back in for whoever knows its password).
    const { user } = (await made.json()) as { user: { id: string } };
    expect((await admin.call(`/api/users/${user.id}/disable`, { method: "POST" })).status).toBe(200);
    const enable = await call(`/api/users/${user.id}/enable`, { method: "POST", token: await token(1) });
    expect([enable.status, await enable.json()]).toMatchObject([403, { error: { code: "expiring_token" } }]);
  });

  it("creates admins when asked", async () => {
    const admin = await signIn("admin");
    const res = await admin.call("/api/users", { method: "POST", json: { email: newEmail(), password: "long enough pw", role: "admin" } });
    expect(((await res.json()) as { user: { role: string } }).user.role).toBe("admin");
  });

  it("answers 409 email_taken for an existing email (any case)", async () => {
    const admin = await signIn("admin");
    const res = await admin.call("/api/users", { method: "POST", json: { email: admin.email.toUpperCase(), password: "long enough pw" } });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "email_taken" } });
  });

  it("answers the same request again, after a reply lost behind the commit, with 201 and the account it made; a different password or role still gets 409", async () => {
    const admin = await signIn("admin");
    const email = newEmail();
    let dropped = 0;
    onDatabaseRequest(async (body) => (dropped === 0 && body.includes('insert into \\"users\\"') ? (dropped++, "lose-reply") : "send"));
    const first = await admin.call("/api/users", { method: "POST", json: { email, password: "long enough pw" } }).finally(() => vi.unstubAllGlobals());
    expect([dropped, first.status]).toEqual([1, 503]);
    const again = await admin.call("/api/users", { method: "POST", json: { email, password: "long enough pw" } });
    expect(again.status).toBe(201);
    const { user } = (await again.json()) as { user: { id: string; email: string; role: string } };
    expect(user).toMatchObject({ email, role: "user" });
    const listed = ((await (await admin.call("/api/users")).json()) as { users: { id: string; email: string }[] }).users.filter((u) => u.email === email);
    expect(listed.map((u) => u.id)).toEqual([user.id]);
    for (const json of [{ email, password: "another long pw" }, { email, password: "long enough pw", role: "admin" }]) {
      const res = await admin.call("/api/users", { method: "POST", json });
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([409, "email_taken"]);
    }
    // Once its owner has signed in, the account is theirs: the same request is 409 (no password check for admins).
    await loginCookie({ email, password: "long enough pw" });
    const later = await admin.call("/api/users", { method: "POST", json: { email, password: "long enough pw" } });
    expect(later.status).toBe(409);
  });

  it("answers 400 naming the field for a short password or a bad role", async () => {
    const admin = await signIn("admin");
    const short = await admin.call("/api/users", { method: "POST", json: { email: newEmail(), password: "short" } });
    expect(short.status).toBe(400);
    expect(await short.json()).toMatchObject({ error: { field: "password" } });
    const role = await admin.call("/api/users", { method: "POST", json: { email: newEmail(), password: "long enough pw", role: "root" } });
    expect(await role.json()).toMatchObject({ error: { field: "role" } });
  });

  it("is forbidden to non-admins, refused without a session or with the runner token, and CSRF-checked", async () => {
    const user = await signIn();
    const json = { email: newEmail(), password: "long enough pw" };
    expect((await user.call("/api/users", { method: "POST", json })).status).toBe(403);
    expect((await call("/api/users", { method: "POST", json })).status).toBe(401);
    expect((await call("/api/users", { method: "POST", json, token: env.RUNNER_TOKEN })).status).toBe(401);
    const admin = await signIn("admin");
    const csrf = await admin.call("/api/users", { method: "POST", json, origin: "https://evil.example" });
    expect(csrf.status).toBe(403);
    expect(await csrf.json()).toMatchObject({ error: { code: "csrf" } });
  });
});

describe("GET /api/users", () => {
  it("lists accounts for admins only", async () => {
    const admin = await signIn("admin");
    const res = await admin.call("/api/users");
    expect(res.status).toBe(200);
    const { users } = (await res.json()) as { users: { email: string; createdAt: string }[] };
    expect(users.some((u) => u.email === admin.email)).toBe(true);
    expect(users[0]!.createdAt).toMatch(/Z$/);
    const user = await signIn();
    expect((await user.call("/api/users")).status).toBe(403);
  });
});

describe("POST /api/users/:id/password", () => {
  it("lets an admin set a new password for a user who lost theirs: the user's sessions end, the new password signs in", async () => {
    const admin = await signIn("admin");
    const user = await signIn();
    const res = await admin.call(`/api/users/${user.id}/password`, { method: "POST", json: { password: "a brand new passphrase" } });
    expect(res.status).toBe(204);
    expect((await user.call("/api/me")).status).toBe(401);
    expect((await call("/api/auth/login", { method: "POST", json: { email: user.email, password: user.password } })).status).toBe(401);
    expect(await loginCookie({ email: user.email, password: "a brand new passphrase" })).toMatch(/^vr_session=/);
  });

  it("refuses a weak password (400), an unknown user (404), the admin's own account (409), non-admins (403) and expiring tokens (403)", async () => {
    const admin = await signIn("admin");
    const user = await signIn();
    const weak = await admin.call(`/api/users/${user.id}/password`, { method: "POST", json: { password: "short" } });
    expect([weak.status, await weak.json()]).toMatchObject([400, { error: { field: "password" } }]);
    expect((await admin.call(`/api/users/${newId()}/password`, { method: "POST", json: { password: "a brand new passphrase" } })).status).toBe(404);
    const self = await admin.call(`/api/users/${admin.id}/password`, { method: "POST", json: { password: "a brand new passphrase" } });
    expect([self.status, await self.json()]).toMatchObject([409, { error: { code: "cannot_reset_self" } }]);
    const other = await signIn();
    expect((await other.call(`/api/users/${user.id}/password`, { method: "POST", json: { password: "a brand new passphrase" } })).status).toBe(403);
    const { token } = (await (await admin.call("/api/tokens", { method: "POST", json: { name: "t", expiresInDays: 1 } })).json()) as { token: string };
    const expiring = await call(`/api/users/${user.id}/password`, { method: "POST", token, json: { password: "a brand new passphrase" } });
    expect([expiring.status, await expiring.json()]).toMatchObject([403, { error: { code: "expiring_token" } }]);
    // None of the refusals changed anything: the user is still signed in with the old password.
    expect((await user.call("/api/me")).status).toBe(200);
    expect(await loginCookie(user)).toMatch(/^vr_session=/);
  });
});
