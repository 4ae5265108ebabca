import { ForbiddenError } from "../../db/errors";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export function isSafeMethod(method: string): boolean {
  return SAFE_METHODS.has(method.toUpperCase());
}

/**
 * True when the request provably comes from a page of this origin. Browsers send Origin on every cross-origin
 * request and on same-origin non-GET requests; Sec-Fetch-Site and Referer are fallbacks for older ones. A
 * request that proves nothing is treated as cross-origin: cookie-authenticated scripts should use API tokens.
 */
export function isSameOrigin(req: Request): boolean {
  const target = new URL(req.url).origin;
  const origin = req.headers.get("origin");
  if (origin) return origin === target;
  const site = req.headers.get("sec-fetch-site");
  if (site) return site === "same-origin";
  const referer = req.headers.get("referer");
  if (!referer) return false;
  try {
    return new URL(referer).origin === target;
  } catch {
    return false;
  }
}

/** CSRF check for state-changing requests that a browser authenticates by cookie. */
export function assertSameOrigin(req: Request): void {
  if (!isSafeMethod(req.method) && !isSameOrigin(req)) {
    throw new ForbiddenError("Cross-origin request refused (Origin does not match this site)", "csrf");
  }
}
