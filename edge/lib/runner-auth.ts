import { createMiddleware } from "hono/factory";
import { UnauthorizedError } from "../../db/errors";
import type { AppEnv } from "../env";

const encoder = new TextEncoder();

/**
 * Compares two secrets in constant time. Both sides are hashed first so the comparison always runs over 32 bytes
 * and neither the length nor a common prefix of the token leaks through timing.
 */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/**
 * Runner-only routes: `Authorization: Bearer <RUNNER_TOKEN>`. Sessions and user API tokens never pass here (and
 * the runner token is not a user credential, so it never passes the user routes either).
 */
export const requireRunner = createMiddleware<AppEnv>(async (c, next) => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
  if (!m || !(await secretsEqual(m[1]!, c.get("config").RUNNER_TOKEN))) {
    throw new UnauthorizedError("This endpoint is for runners: send Authorization: Bearer <RUNNER_TOKEN>", "runner_unauthorized");
  }
  await next();
});
