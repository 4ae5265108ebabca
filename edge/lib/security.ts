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
