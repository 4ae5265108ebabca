import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { ForbiddenError, UnauthorizedError } from "../../db/errors";
import { authenticateSession } from "../../db/queries/sessions";
import { authenticateApiToken } from "../../db/queries/tokens";
import type { AppEnv } from "../env";
import { assertSameOrigin, isSafeMethod } from "./csrf";
import { countCredentialRequest, countUserRequest } from "./request-limit";

export const SESSION_COOKIE = "vr_session";
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Which forms of a cookie to set and read. On https the `__Host-` form only: browsers then insist on Secure,
 * Path=/ and no Domain, so neither a sibling subdomain nor a plain-http page can plant or overwrite it. On loopback
 * http (`npm start` on 127.0.0.1 or localhost) both: Chromium and Firefox take a Secure `__Host-` cookie there,
 * Safari refuses it and keeps the plain one beside it (no other site can reach a loopback origin's cookies). On any
 * other plain http the plain form only: every browser refuses a `__Host-` cookie there.
 */
function cookieForms(c: Context<AppEnv>): { host: boolean; plain: boolean } {
  const url = new URL(c.req.url);
  if (url.protocol === "https:") return { host: true, plain: false };
  return { host: isLoopback(url.hostname), plain: true };
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname.endsWith(".localhost") || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

type CookieOptions = { path: "/"; httpOnly: true; sameSite: "Lax" | "Strict"; expires?: Date; maxAge?: number };

function setAppCookie(c: Context<AppEnv>, name: string, value: string, options: CookieOptions): void {
  const forms = cookieForms(c);
  // The __Host- form first: a client that keeps one of them (the CLI's device store) keeps that one.
  if (forms.host) setCookie(c, name, value, { ...options, secure: true, prefix: "host" });
  if (forms.plain) setCookie(c, name, value, options);
}

function readAppCookie(c: Context<AppEnv>, name: string): string | undefined {
  const forms = cookieForms(c);
  return (forms.host ? getCookie(c, name, "host") : undefined) ?? (forms.plain ? getCookie(c, name) : undefined);
}

/** HttpOnly + SameSite=Lax always; Secure and the __Host- prefix where browsers take them. */
export function setSessionCookie(c: Context<AppEnv>, token: string, expiresAt: number): void {
  setAppCookie(c, SESSION_COOKIE, token, { path: "/", httpOnly: true, sameSite: "Lax", expires: new Date(expiresAt) });
}

export function clearSessionCookie(c: Context<AppEnv>): void {
  const forms = cookieForms(c);
  if (forms.host) deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true, prefix: "host" });
  if (forms.plain) deleteCookie(c, SESSION_COOKIE, { path: "/" });
}

export function sessionToken(c: Context<AppEnv>): string | undefined {
  return readAppCookie(c, SESSION_COOKIE);
}

export const DEVICE_COOKIE = "vr_device";
const DEVICE_MAX_AGE_S = 365 * 24 * 60 * 60;

/**
 * The "this browser signed in to this account before" cookie (db/queries/remember-login-device.ts): it exempts the
 * browser from the account-wide login throttle, so guesses from elsewhere cannot lock its owner out. HttpOnly,
 * SameSite=Strict, in the same forms as the session cookie.
 */
export function setDeviceCookie(c: Context<AppEnv>, token: string): void {
  setAppCookie(c, DEVICE_COOKIE, token, { path: "/", httpOnly: true, sameSite: "Strict", maxAge: DEVICE_MAX_AGE_S });
}

export function deviceToken(c: Context<AppEnv>): string | undefined {
  return readAppCookie(c, DEVICE_COOKIE);
}

/** The absolute session lifetime (SESSION_MAX_AGE_DAYS) in ms. */
export function sessionMaxAgeMs(c: Context<AppEnv>): number {
  return c.get("config").SESSION_MAX_AGE_DAYS * DAY_MS;
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
 * Disabled accounts, expired tokens and sessions past their absolute lifetime fail in the same lookup, so a
 * change takes effect on the next request.
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
    await countCredentialRequest(c, m[1]!);
    const auth = await authenticateApiToken(db, m[1]!, now);
    if (!auth) throw new UnauthorizedError("Unknown, expired or revoked API token", "invalid_token");
    await countUserRequest(c, auth.id);
    if (auth.scope === "read" && !isSafeMethod(c.req.method)) {
      throw new ForbiddenError("This API token is read-only", "read_only_token");
    }
    c.set("user", { id: auth.id, email: auth.email, role: auth.role });
    c.set("tokenExpiresAt", auth.expiresAt);
    return next();
  }
  const token = sessionToken(c);
  if (!token) throw new UnauthorizedError();
  assertSameOrigin(c.req.raw);
  await countCredentialRequest(c, token);
  const auth = await authenticateSession(db, token, now, sessionMaxAgeMs(c));
  if (!auth) throw new UnauthorizedError("Your session has ended; sign in again", "session_expired");
  if (auth.renewedUntil) setSessionCookie(c, token, auth.renewedUntil);
  await countUserRequest(c, auth.user.id);
  c.set("user", auth.user);
  await next();
};

/** After requireUser: only admins pass. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.get("user").role !== "admin") throw new ForbiddenError("Only administrators can do this");
  await next();
};

/**
 * Refuses an API token that expires (403 `expiring_token`) for what would outlive it: an account, a re-enabled
 * account, a password set, a webhook's address. A leaked short-lived token must not leave its finder a lasting way
 * in, nor a lasting copy of the owner's job events — as a token made with one is capped at its expiry
 * (routes/tokens.ts). `what` completes "An expiring API token cannot …".
 */
export function refuseExpiringToken(c: Context<AppEnv>, what: string): void {
  if (c.get("tokenExpiresAt") != null) {
    throw new ForbiddenError(`An expiring API token cannot ${what}; sign in, or use a token without expiry`, "expiring_token");
  }
}
