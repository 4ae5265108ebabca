import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { ForbiddenError, UnauthorizedError } from "../../db/errors";
import { authenticateSession } from "../../db/queries/sessions";
import { authenticateApiToken } from "../../db/queries/tokens";
import type { AppEnv } from "../env";
import { assertSameOrigin } from "./csrf";

export const SESSION_COOKIE = "vr_session";

/** HttpOnly + SameSite=Lax always; Secure whenever the site is served over https (i.e. everywhere but local dev). */
export function setSessionCookie(c: Context<AppEnv>, token: string, expiresAt: number): void {
  setCookie(c, SESSION_COOKIE, token, {
    path: "/",
    httpOnly: true,
    sameSite: "Lax",
    secure: new URL(c.req.url).protocol === "https:",
    expires: new Date(expiresAt),
  });
}

export function clearSessionCookie(c: Context<AppEnv>): void {
  deleteCookie(c, SESSION_COOKIE, { path: "/", secure: new URL(c.req.url).protocol === "https:" });
}

export function sessionToken(c: Context<AppEnv>): string | undefined {
  return getCookie(c, SESSION_COOKIE);
}

/** Constant-time string comparison, so probing user endpoints with guesses learns nothing about RUNNER_TOKEN. */
function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Authenticates a user by `Authorization: Bearer <api token>` or by the session cookie, and sets `user`.
 * Only cookie-authenticated requests are CSRF-checked: a cross-site page can make the browser send cookies
 * but cannot attach an Authorization header. The runner token is refused here; it only opens /internal.
 */
export const requireUser: MiddlewareHandler<AppEnv> = async (c, next) => {
  const db = c.get("db");
  const now = Date.now();
  const authorization = c.req.header("authorization");
  if (authorization) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) throw new UnauthorizedError("Use Authorization: Bearer <API token>", "invalid_token");
    if (sameSecret(m[1]!, c.get("config").RUNNER_TOKEN)) {
      throw new UnauthorizedError("The runner token is not valid on user endpoints", "invalid_token");
    }
    const user = await authenticateApiToken(db, m[1]!, now);
    if (!user) throw new UnauthorizedError("Unknown or revoked API token", "invalid_token");
    c.set("user", user);
    return next();
  }
  const token = sessionToken(c);
  if (!token) throw new UnauthorizedError();
  assertSameOrigin(c.req.raw);
  const auth = await authenticateSession(db, token, now);
  if (!auth) throw new UnauthorizedError("Your session has ended; sign in again", "session_expired");
  if (auth.renewedUntil) setSessionCookie(c, token, auth.renewedUntil);
  c.set("user", auth.user);
  await next();
};

/** After requireUser: only admins pass. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.get("user").role !== "admin") throw new ForbiddenError("Only administrators can do this");
  await next();
};
