import { and, desc, eq, gt, isNull, lt, or, sql } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError, isConstraintFailure, NotFoundError } from "../errors";
import { hashToken, newId, newToken } from "../ids";
import { apiTokens, users } from "../schema";
import type { AuthenticatedUser } from "./sessions";

/** last_used_at is refreshed at most this often, so a busy script does not write on every request. */
const TOKEN_TOUCH_EVERY_MS = 60 * 1000;

export type TokenScope = "full" | "read";

export interface ApiTokenRow {
  id: string;
  name: string;
  scope: TokenScope;
  createdAt: number;
  lastUsedAt: number | null;
  expiresAt: number | null;
}

/**
 * Tokens one user may hold (expired ones count until revoked): every request with a token reads by its hash, but the
 * list and the rows were unbounded, one POST each.
 */
export const API_TOKENS_PER_USER = 100;

/**
 * Creates an API token; the raw token is returned only here (stored hashed). The count is checked in the insert (its
 * owner is NULL past the limit), so parallel creations cannot pass it together. 409 `too_many_tokens` past it.
 * With an `idempotencyKey`, a twin request holding the same key that committed first makes this insert collide on the
 * key's unique index: 409 `idempotency_key_in_flight`, and that twin's token is left alone (its answer may be the one
 * the client reads); the client's next try finds it (reissueApiToken).
 */
export async function createApiToken(
  db: Db,
  input: { userId: string; name: string; scope?: TokenScope; expiresAt?: number | null; idempotencyKey?: string | null; fingerprint?: string | null },
  now: number,
): Promise<ApiTokenRow & { token: string }> {
  const token = newToken("vrt_");
  const row = { id: newId(), name: input.name, scope: input.scope ?? "full", createdAt: now, lastUsedAt: null, expiresAt: input.expiresAt ?? null };
  const key = input.idempotencyKey ?? null;
  const idempotency = { idempotencyKey: key, idempotencyFingerprint: key === null ? null : (input.fingerprint ?? null) };
  const owner = sql<string>`(SELECT CASE WHEN count(*) < ${API_TOKENS_PER_USER} THEN ${input.userId} END FROM api_tokens WHERE user_id = ${input.userId})`;
  try {
    await db.insert(apiTokens).values({ ...row, ...idempotency, userId: owner, tokenHash: await hashToken(token) });
  } catch (err) {
    if (key !== null && isConstraintFailure(err, "UNIQUE constraint failed: api_tokens.user_id, api_tokens.idempotency_key")) {
      throw new ConflictError("idempotency_key_in_flight", "Another request with this Idempotency-Key is being answered; send this one again");
    }
    if (!isConstraintFailure(err, "NOT NULL constraint failed: api_tokens.user_id")) throw err;
    throw new ConflictError("too_many_tokens", `You have ${API_TOKENS_PER_USER} API tokens, the most an account may hold; revoke ones you no longer use`);
  }
  return { ...row, token };
}

/** The columns of an ApiTokenRow (never the hash). */
export const apiTokenColumns = {
  id: apiTokens.id,
  name: apiTokens.name,
  scope: apiTokens.scope,
  createdAt: apiTokens.createdAt,
  lastUsedAt: apiTokens.lastUsedAt,
  expiresAt: apiTokens.expiresAt,
};

export async function listApiTokens(db: Db, userId: string): Promise<ApiTokenRow[]> {
  return db
    .select(apiTokenColumns)
    .from(apiTokens)
    .where(eq(apiTokens.userId, userId))
    .orderBy(desc(apiTokens.createdAt), desc(apiTokens.id));
}

/** Deletes one of the user's own tokens; someone else's token id is NotFound like an unknown one. */
export async function deleteApiToken(db: Db, input: { userId: string; id: string }): Promise<void> {
  const gone = await db
    .delete(apiTokens)
    .where(and(eq(apiTokens.id, input.id), eq(apiTokens.userId, input.userId)))
    .returning({ id: apiTokens.id });
  if (gone.length === 0) throw new NotFoundError("No such API token");
}

/** Resolves a Bearer token to its user and scope, or null (unknown, expired, or the account is disabled). */
export async function authenticateApiToken(
  db: Db,
  token: string,
  now: number,
): Promise<(AuthenticatedUser & { scope: TokenScope; expiresAt: number | null }) | null> {
  const tokenHash = await hashToken(token);
  const [row] = await db
    .select({
      id: users.id,
      email: users.email,
      role: users.role,
      scope: apiTokens.scope,
      expiresAt: apiTokens.expiresAt,
      tokenId: apiTokens.id,
      lastUsedAt: apiTokens.lastUsedAt,
    })
    .from(apiTokens)
    .innerJoin(users, eq(users.id, apiTokens.userId))
    .where(
      and(
        eq(apiTokens.tokenHash, tokenHash),
        or(isNull(apiTokens.expiresAt), gt(apiTokens.expiresAt, now)),
        isNull(users.disabledAt),
      ),
    );
  if (!row) return null;
  if (row.lastUsedAt === null || now - row.lastUsedAt >= TOKEN_TOUCH_EVERY_MS) {
    await db
      .update(apiTokens)
      .set({ lastUsedAt: now })
      .where(
        and(
          eq(apiTokens.id, row.tokenId),
          or(isNull(apiTokens.lastUsedAt), lt(apiTokens.lastUsedAt, now - TOKEN_TOUCH_EVERY_MS)),
        ),
      );
  }
  return { id: row.id, email: row.email, role: row.role, scope: row.scope, expiresAt: row.expiresAt };
}
