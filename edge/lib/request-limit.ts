import type { Context } from "hono";
import { TooManyRequestsError } from "../../db/errors";
import { hashToken } from "../../db/ids";
import { USER_REQUEST_LIMIT } from "../../db/limits";
import type { AppEnv } from "../env";

/**
 * The per-account request budget (`USER_REQUESTS`, Cloudflare's rate-limit binding: a counter per location that every
 * isolate shares, nothing of ours to keep consistent). Every request behind sign-in is counted twice, under two keys
 * with the same budget:
 *
 * - **its credential** (a hash: keys leave this Worker, secrets must not), before the database is asked who it is, so
 *   a loop with one token or cookie is refused without a lookup (nor the lookup's token touch or session renewal);
 * - **its user**, once known, so the account's tokens, sessions and tabs share one budget: minting tokens does not
 *   multiply it, and one user's loop never spends another's.
 *
 * Either refusal comes before the route does anything.
 */
export async function countCredentialRequest(c: Context<AppEnv>, credential: string): Promise<void> {
  await count(c, `credential:${await hashToken(credential)}`);
}

export async function countUserRequest(c: Context<AppEnv>, userId: string): Promise<void> {
  await count(c, `user:${userId}`);
}

async function count(c: Context<AppEnv>, key: string): Promise<void> {
  let allowed: boolean;
  try {
    ({ success: allowed } = await c.env.USER_REQUESTS.limit({ key }));
  } catch (err) {
    // The limiter itself failing (Cloudflare trouble) must not take the product down with it: the request goes on
    // uncounted, and the log says so.
    console.warn(`[${c.get("requestId") ?? "-"}] request limit unavailable; request not counted`, err instanceof Error ? err.message : err);
    return;
  }
  if (!allowed) {
    const { requests, periodSeconds } = USER_REQUEST_LIMIT;
    throw new TooManyRequestsError(
      `Too many requests from your account (at most ${requests} every ${periodSeconds} seconds); wait a few seconds and try again`,
      periodSeconds,
      "rate_limited",
    );
  }
}
