import type { MiddlewareHandler } from "hono";
import { secureHeaders } from "hono/secure-headers";

/**
 * Security headers on every response. The CSP allows only this origin's scripts (no inline script), blob:/data:
 * media for in-page previews, and forbids framing (clickjacking) both via CSP and X-Frame-Options.
 */
export const securityHeaders = () =>
  secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", "data:", "blob:"],
      mediaSrc: ["'self'", "blob:"],
      connectSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'self'"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
    },
    xFrameOptions: "DENY",
    xContentTypeOptions: "nosniff",
    referrerPolicy: "same-origin",
    crossOriginResourcePolicy: "same-origin",
    crossOriginOpenerPolicy: "same-origin",
    // HSTS only matters on https; browsers ignore it on http, so it is harmless for local dev.
    strictTransportSecurity: "max-age=31536000; includeSubDomains",
  });

/**
 * API answers are one user's data, and some carry secrets shown once (a new API token, a webhook's signing secret):
 * no browser or proxy may keep them, unless the route chose its own caching (outputs and thumbnails: private, for
 * previews; the ZIP: no-store already).
 */
export const privateApiAnswers = (): MiddlewareHandler => async (c, next) => {
  await next();
  if (!c.res.headers.has("Cache-Control")) c.res.headers.set("Cache-Control", "no-store");
};
