import { and, eq, gt, isNotNull, isNull, lte } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError, ForbiddenError, UnprocessableError } from "../errors";
import { hashToken, newToken } from "../ids";
import { apiTokens } from "../schema";
import type { ApiTokenRow, TokenScope } from "./tokens";

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
 * token is stored only hashed, so the lost answer's one cannot be sent again; the earlier secret stops working), or
 * null when the key made none (or its token was revoked). One compare-and-set: only the same request, within
 * TOKEN_KEY_REPLAY_MS, and only while the token was never used — a used token proves its answer arrived, and
 * replacing its secret would break whatever uses it (409 `token_already_used`). 422 `idempotency_key_reused` for the
 * same key asking for another token, `idempotency_key_expired` past the window. `notAfter`: the expiry of the API token
 * asking (null: a session or a token that never expires); a token that outlives it is not reissued to it (403
 * `expiring_token`), as a short-lived token may not make one that outlives it (POST /api/tokens).
 */
export async function reissueApiToken(
  db: Db,
  input: { userId: string; key: string; fingerprint: string; notAfter?: number | null },
  now: number,
): Promise<(ApiTokenRow & { token: string }) | null> {
  const token = newToken("vrt_");
  const notAfter = input.notAfter ?? null;
  const mine = and(eq(apiTokens.userId, input.userId), eq(apiTokens.idempotencyKey, input.key));
  const columns = {
    id: apiTokens.id,
    name: apiTokens.name,
    scope: apiTokens.scope,
    createdAt: apiTokens.createdAt,
    lastUsedAt: apiTokens.lastUsedAt,
    expiresAt: apiTokens.expiresAt,
  };
  const [row] = await db
    .update(apiTokens)
    .set({ tokenHash: await hashToken(token) })
    .where(
      and(
        mine,
        eq(apiTokens.idempotencyFingerprint, input.fingerprint),
        isNull(apiTokens.lastUsedAt),
        gt(apiTokens.createdAt, now - TOKEN_KEY_REPLAY_MS),
        notAfter === null ? undefined : and(isNotNull(apiTokens.expiresAt), lte(apiTokens.expiresAt, notAfter)),
      ),
    )
    .returning(columns);
  if (row) return { ...row, token };
  // Nothing changed: say why from the row as it is now.
  const [earlier] = await db
    .select({ ...columns, fingerprint: apiTokens.idempotencyFingerprint })
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
  throw new ConflictError("token_already_used", "The token this Idempotency-Key made has been used since, so it is not issued again; use a new key for a new token");
}
