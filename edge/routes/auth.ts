import { Hono } from "hono";
import { ForbiddenError } from "../../db/errors";
import { login } from "../../db/queries/login";
import { deleteSession } from "../../db/queries/sessions";
import type { AppEnv } from "../env";
import { clearSessionCookie, deviceToken, sessionMaxAgeMs, sessionToken, setDeviceCookie, setSessionCookie } from "../lib/auth";
import { clientAddress } from "../lib/client-address";
import { isSameOrigin } from "../lib/csrf";
import { LoginBody } from "../lib/schemas";
import { validate } from "../lib/validate";

export const auth = new Hono<AppEnv>()
  .post("/login", validate("json", LoginBody), async (c) => {
    // Login CSRF: a foreign page must not sign the browser into an account of the attacker's choosing. Scripts
    // (no Origin header) may log in; they then use API tokens.
    if (c.req.header("origin") && !isSameOrigin(c.req.raw)) {
      throw new ForbiddenError("Cross-origin request refused (Origin does not match this site)", "csrf");
    }
    const body = c.req.valid("json");
    const config = c.get("config");
    const { user, session, deviceToken: newDevice } = await login(
      c.get("db"),
      {
        ...body,
        address: clientAddress(c.req.raw, config.TRUSTED_PROXY),
        previousToken: sessionToken(c),
        deviceToken: deviceToken(c),
        userAgent: c.req.header("user-agent") ?? null,
        pepper: config.PASSWORD_PEPPER,
        maxAgeMs: sessionMaxAgeMs(c),
      },
      Date.now(),
    );
    setSessionCookie(c, session.token, session.expiresAt);
    if (newDevice) setDeviceCookie(c, newDevice);
    // Outputs and thumbnails are cached `private` for an hour (see logout): a browser whose last account's session
    // just expired, without a logout, still holds them for whoever signs in next.
    c.header("Clear-Site-Data", '"cache"');
    return c.json({ user });
  })
  .post("/logout", async (c) => {
    const token = sessionToken(c);
    // With no session cookie the check still applies to a browser (it sends Origin on every POST): a foreign page's
    // form is sent without the Lax cookie, and answering it would clear the cookie all the same — signing the
    // user out from another site, and an upload in another tab with them. Scripts without a cookie may call it.
    if ((token || c.req.header("origin") !== undefined) && !isSameOrigin(c.req.raw)) {
      throw new ForbiddenError("Cross-origin request refused (Origin does not match this site)", "csrf");
    }
    if (token) await deleteSession(c.get("db"), token);
    clearSessionCookie(c);
    // Outputs and thumbnails are cached for an hour (`private`: this browser only); on a shared computer the next
    // person could open them from the cache without signing in. The cache goes with the session.
    c.header("Clear-Site-Data", '"cache"');
    return c.body(null, 204);
  });
