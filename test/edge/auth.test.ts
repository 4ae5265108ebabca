import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { hashToken } from "../../db/ids";
import { ACCOUNT_RULE } from "../../db/queries/login-attempts";
import { authenticateSession, SESSION_SLIDE_EVERY_MS, SESSION_TTL_MS } from "../../db/queries/sessions";
import { sessions } from "../../db/schema";
import { call, db, loginCookie, makeUser, ORIGIN, signIn } from "./helpers";

const ip = () => `192.0.2.${Math.floor(Math.random() * 250)}`;

describe("POST /api/auth/login", () => {
  it("signs in with the right password and sets an HttpOnly SameSite=Lax session cookie", async () => {
    const user = await makeUser();
    const res = await call("/api/auth/login", { method: "POST", json: { email: user.email, password: user.password } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ user: { id: user.id, email: user.email, role: "user" } });
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^vr_session=vrs_[\w-]{40,};/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).not.toMatch(/Secure/i); // plain http here
    const expires = Date.parse(/Expires=([^;]+)/i.exec(cookie)![1]!);
    expect(expires).toBeGreaterThan(Date.now() + SESSION_TTL_MS - 60_000);
  });

  it("marks the cookie Secure when the site is served over https", async () => {
    const user = await makeUser();
    const res = await (await import("cloudflare:workers")).exports.default.fetch(
      new Request("https://edge.test/api/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: user.email, password: user.password }),
      }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("set-cookie")).toMatch(/^__Host-vr_session=.*; Secure/i);
  });

  it("sets the __Host- cookie, Secure, on loopback http too (npm start), with a plain one beside it for browsers that refuse Secure there", async () => {
    const { exports } = await import("cloudflare:workers");
    for (const origin of ["http://127.0.0.1:8787", "http://localhost:8787"]) {
      const user = await makeUser();
      const res = await exports.default.fetch(
        new Request(`${origin}/api/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip() },
          body: JSON.stringify({ email: user.email, password: user.password }),
        }),
      );
      expect(res.status).toBe(200);
      // One header, cookies joined by ", " (an Expires date has a comma too, never followed by "name=").
      const cookies = (res.headers.get("set-cookie") ?? "").split(/,\s*(?=[\w-]+=)/);
      const hostForm = cookies.find((c) => c.startsWith("__Host-vr_session="))!;
      expect(hostForm).toMatch(/; Secure/i);
      expect(hostForm).toMatch(/HttpOnly/i);
      expect(hostForm).toMatch(/Path=\//);
      const plain = cookies.find((c) => c.startsWith("vr_session="))!;
      expect(plain).toMatch(/HttpOnly/i);
      expect(plain).not.toMatch(/Secure/i);
      expect(cookies.find((c) => c.startsWith("__Host-vr_device="))).toMatch(/; Secure/i);
      // Chromium and Firefox send both; Safari, which refuses Secure cookies on http://localhost, the plain one only.
      for (const sent of [`${hostForm.split(";")[0]}; ${plain.split(";")[0]}`, plain.split(";")[0]!]) {
        expect((await exports.default.fetch(new Request(`${origin}/api/me`, { headers: { cookie: sent } }))).status).toBe(200);
      }
    }
  });

  it("stores only a hash of the session token", async () => {
    const user = await makeUser();
    const cookie = await loginCookie(user);
    const token = cookie.split("=")[1]!;
    const rows = await db.select().from(sessions).where(eq(sessions.userId, user.id));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.tokenHash).toBe(await hashToken(token));
    expect(JSON.stringify(rows)).not.toContain(token);
  });

  it("accepts the email in any letter case", async () => {
    const user = await makeUser();
    const res = await call("/api/auth/login", { method: "POST", json: { email: user.email.toUpperCase(), password: user.password } });
    expect(res.status).toBe(200);
  });

  it("answers 401 for a wrong password and for an unknown email, without a cookie", async () => {
    const user = await makeUser();
    const wrong = await call("/api/auth/login", { method: "POST", json: { email: user.email, password: "nope" } });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: { code: "invalid_credentials" } });
    expect(wrong.headers.get("set-cookie")).toBeNull();
    const unknown = await call("/api/auth/login", { method: "POST", json: { email: `nobody-${ip()}@test.example`, password: "x" } });
    expect(unknown.status).toBe(401);
  });

  it("answers 400 naming the field for a malformed body", async () => {
    const res = await call("/api/auth/login", { method: "POST", json: { email: "not-an-email", password: "x" } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_request", field: "email" } });
    const missing = await call("/api/auth/login", { method: "POST", json: { email: "a@b.example" } });
    expect(await missing.json()).toMatchObject({ error: { field: "password" } });
  });

  it("answers 429 with Retry-After once an account has used its free attempts, even with the right password and from another address", async () => {
    const user = await makeUser();
    for (let i = 0; i < ACCOUNT_RULE.free; i++) {
      const res = await call("/api/auth/login", {
        method: "POST",
        json: { email: user.email, password: `wrong-${i}` },
        headers: { "cf-connecting-ip": ip() },
      });
      expect(res.status).toBe(401);
    }
    for (const from of [ip(), "2001:db8:77::1"]) {
      const blocked = await call("/api/auth/login", {
        method: "POST",
        json: { email: user.email, password: user.password },
        headers: { "cf-connecting-ip": from },
      });
      expect(blocked.status).toBe(429);
      expect(await blocked.json()).toMatchObject({ error: { code: "too_many_attempts" } });
      expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThan(0);
    }
  });

  it("refuses a login posted from another origin", async () => {
    const user = await makeUser();
    const res = await call("/api/auth/login", {
      method: "POST",
      json: { email: user.email, password: user.password },
      origin: "https://evil.example",
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: "csrf" } });
  });
});

describe("GET /api/me and POST /api/auth/logout", () => {
  it("returns the signed-in user", async () => {
    const s = await signIn("admin");
    const res = await s.call("/api/me");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ user: { id: s.id, email: s.email, role: "admin" } });
  });

  it("answers 401 without a session and with an unknown cookie", async () => {
    expect((await call("/api/me")).status).toBe(401);
    const res = await call("/api/me", { cookie: "vr_session=vrs_forged" });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "session_expired" } });
  });

  it("refuses the runner token on user endpoints", async () => {
    const res = await call("/api/me", { token: env.RUNNER_TOKEN });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_token" } });
  });

  it("ends the session on logout so the cookie no longer works", async () => {
    const s = await signIn();
    const out = await s.call("/api/auth/logout", { method: "POST" });
    expect(out.status).toBe(204);
    expect(out.headers.get("set-cookie")).toMatch(/vr_session=;/);
    expect((await s.call("/api/me")).status).toBe(401);
    expect(out.headers.get("clear-site-data")).toBe('"cache"');
  });

  it("clears the browser's cache at sign-in too: outputs the previous account cached (its session expired, no logout) are not left for the next person", async () => {
    const user = await makeUser();
    const res = await call("/api/auth/login", { method: "POST", json: { email: user.email, password: user.password } });
    expect(res.status).toBe(200);
    expect(res.headers.get("clear-site-data")).toBe('"cache"');
  });

  it("refuses a cross-origin logout (CSRF) and keeps the session", async () => {
    const s = await signIn();
    const res = await s.call("/api/auth/logout", { method: "POST", origin: "https://evil.example" });
    expect(res.status).toBe(403);
    expect((await s.call("/api/me")).status).toBe(200);
  });

  it("refuses a cross-origin logout that carries no cookie (a foreign form: SameSite keeps the cookie back) and clears nothing", async () => {
    const res = await call("/api/auth/logout", { method: "POST", origin: "https://evil.example" });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: "csrf" } });
    expect(res.headers.get("set-cookie")).toBeNull();
    expect(res.headers.get("clear-site-data")).toBeNull();
  });

  it("slides the session expiry forward when it is used after an hour", async () => {
    const user = await makeUser();
    const cookie = await loginCookie(user);
    const token = cookie.split("=")[1]!;
    const later = Date.now() + SESSION_SLIDE_EVERY_MS + 1000;
    const auth = await authenticateSession(db, token, later);
    expect(auth?.user.id).toBe(user.id);
    expect(auth?.renewedUntil).toBe(later + SESSION_TTL_MS);
    // Within the hour nothing is written again.
    expect((await authenticateSession(db, token, later + 1000))?.renewedUntil).toBeNull();
    // Past the (slid) expiry the session is gone.
    expect(await authenticateSession(db, token, later + SESSION_TTL_MS + 1)).toBeNull();
  });
});

describe("security headers", () => {
  it("sends CSP with frame-ancestors 'none', nosniff and X-Frame-Options on API responses", async () => {
    const res = await call("/api/me");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toMatch(/style-src 'self'(;|$)/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
  });

  it("tells browsers and proxies to keep no API answer (one user's data, secrets shown once), errors included", async () => {
    const s = await signIn();
    for (const res of [await s.call("/api/me"), await s.call("/api/jobs"), await s.call("/api/jobs/no-such-job"), await call("/api/me")]) {
      expect(res.headers.get("cache-control"), res.url).toBe("no-store");
    }
  });
});

describe("CSRF on cookie-authenticated requests", () => {
  it("refuses a state-changing request with a foreign Origin, or with no Origin, Referer or Sec-Fetch-Site", async () => {
    const s = await signIn();
    const foreign = await s.call("/api/tokens", { method: "POST", json: { name: "x" }, origin: "https://evil.example" });
    expect(foreign.status).toBe(403);
    const none = await s.call("/api/tokens", { method: "POST", json: { name: "x" }, origin: null });
    expect(none.status).toBe(403);
    const referer = await s.call("/api/tokens", {
      method: "POST",
      json: { name: "x" },
      origin: null,
      headers: { referer: `${ORIGIN}/jobs` },
    });
    expect(referer.status).toBe(201);
  });

  it("lets Bearer-token requests through without an Origin (they cannot be forged cross-site)", async () => {
    const s = await signIn();
    const created = (await (await s.call("/api/tokens", { method: "POST", json: { name: "cli" } })).json()) as { token: string };
    const res = await call("/api/tokens", { method: "POST", json: { name: "from-script" }, token: created.token });
    expect(res.status).toBe(201);
  });
});
