import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import { call, loginCookie, signIn } from "./helpers";

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
