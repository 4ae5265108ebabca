import { and, eq, gt, isNotNull, isNull, lte, or } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError, ForbiddenError, UnprocessableError } from "../errors";
import { hashToken, newToken } from "../ids";
import { apiTokens } from "../schema";
import { apiTokenColumns, type ApiTokenRow, type TokenScope } from "./tokens";

/**
 * How long a repeat of a token creation's Idempotency-Key gets that token back: long enough for any retry after a lost
 * answer, short enough that an old key is not a standing way to take over a token.
 */
export const TOKEN_KEY_REPLAY_MS = 24 * 3_600_000;

/** What a token creation asked for: a repeat of its Idempotency-Key must ask the same. */
export function tokenFingerprint(input: { name: string; scope: TokenScope; expiresInDays: number | null }): string {
  return JSON.stringify([input.name, input.scope, input.expiresInDays]);
}

/**
 * The token an earlier POST /api/tokens with this Idempotency-Key made for this user, with a **new secret** (the raw
 * token is stored only hashed, so the lost answer's one cannot be sent again; each reissue voids the secret the one
 * before gave), or null when the key made none — or its token was revoked: the key is free again, and the request
 * makes a new token. One compare-and-set, refused when:
 * - another token was asked for with the key: 422 `idempotency_key_reused`; past TOKEN_KEY_REPLAY_MS: 422
 *   `idempotency_key_expired`;
 * - the asking API token expires sooner than this token (`notAfter`; null: a session or a lasting token): 403
 *   `expiring_token`, as a short-lived token may not make one that outlives it (POST /api/tokens);
 * - the token expired: 409 `token_expired` (its secret could not work);
 * - the token was used: 409 `token_already_used` — its answer arrived, and a new secret would break what uses it.
 */
export async function reissueApiToken(
  db: Db,
  input: { userId: string; key: string; fingerprint: string; notAfter?: number | null },
  now: number,
): Promise<(ApiTokenRow & { token: string }) | null> {
  const token = newToken("vrt_");
  const notAfter = input.notAfter ?? null;
  const mine = and(eq(apiTokens.userId, input.userId), eq(apiTokens.idempotencyKey, input.key));
  const [row] = await db
    .update(apiTokens)
    .set({ tokenHash: await hashToken(token) })
    .where(
      and(
        mine,
        eq(apiTokens.idempotencyFingerprint, input.fingerprint),
        isNull(apiTokens.lastUsedAt),
        gt(apiTokens.createdAt, now - TOKEN_KEY_REPLAY_MS),
        or(isNull(apiTokens.expiresAt), gt(apiTokens.expiresAt, now)),
        notAfter === null ? undefined : and(isNotNull(apiTokens.expiresAt), lte(apiTokens.expiresAt, notAfter)),
      ),
    )
    .returning(apiTokenColumns);
  if (row) return { ...row, token };
  // Nothing changed: say why from the row as it is now.
  const [earlier] = await db
    .select({ ...apiTokenColumns, fingerprint: apiTokens.idempotencyFingerprint })
    .from(apiTokens)
    .where(mine);
  if (!earlier) return null;
  if (earlier.fingerprint !== input.fingerprint) {
    throw new UnprocessableError("idempotency_key_reused", "This Idempotency-Key already made a token with another name, scope or expiry; use a new key");
  }
  if (earlier.createdAt <= now - TOKEN_KEY_REPLAY_MS) {
    throw new UnprocessableError("idempotency_key_expired", "This Idempotency-Key made a token more than 24 hours ago; use a new key");
  }
  if (notAfter !== null && (earlier.expiresAt === null || earlier.expiresAt > notAfter)) {
    throw new ForbiddenError("This Idempotency-Key's token outlives the API token asking; send the request again signed in, or with a token that lasts as long", "expiring_token");
  }
  if (earlier.expiresAt !== null && earlier.expiresAt <= now) {
    throw new ConflictError("token_expired", "The token this Idempotency-Key made has expired; use a new key for a new token");
  }
  throw new ConflictError("token_already_used", "The token this Idempotency-Key made has been used since, so it is not issued again; use a new key for a new token");
}
