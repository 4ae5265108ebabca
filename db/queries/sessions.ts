import { and, desc, eq, gt, isNull, lt, ne, notInArray, sql } from "drizzle-orm";
import type { Db } from "../client";
import { NotFoundError } from "../errors";
import { hashToken, newId, newToken } from "../ids";
import { sessions, users } from "../schema";
import { newLoginDevice } from "./remember-login-device";
import type { Role } from "./users";

/** Sessions live 7 days after their last use (sliding expiry)… */
export const SESSION_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** …and never longer than this after sign-in, however busy (SESSION_MAX_AGE_DAYS overrides it at the edge). */
export const SESSION_MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000;
/**
 * The expiry is pushed forward at most this often, so an active browser costs one write per hour
 * rather than one per request.
 */
export const SESSION_SLIDE_EVERY_MS = 60 * 60 * 1000;

/**
 * Sessions one user keeps; a sign-in past it ends the least recently used. Each successful login adds one, and a
 * script that signs in without keeping its cookie piled them up without bound.
 */
export const SESSIONS_PER_USER = 50;

export interface AuthenticatedUser {
  id: string;
  email: string;
  role: Role;
}

export interface NewSession {
  /** The raw cookie value; only its hash is stored. */
  token: string;
  expiresAt: number;
  /** With `newDevice`: the `vr_device` cookie of the browser remembered with the session. */
  deviceToken?: string;
}

export async function createSession(
  db: Db,
  input: { userId: string; userAgent?: string | null; maxAgeMs?: number },
  now: number,
): Promise<NewSession>;
/**
 * With `ifPasswordHash`: only while the account still has that password hash and is not disabled (a sign-in's
 * compare-and-set), else null. A sign-in checks the password it read, then creates its session: a password change
 * or reset between the two ended every session but could not end this one, which outlived the old password.
 * With `newDevice`, the browser is remembered in the same batch, only beside the session: a change or reset that
 * wins forgets it as surely (remembered after it, its cookie would take guesses at the new password off the
 * account's lock).
 */
export async function createSession(
  db: Db,
  input: { userId: string; userAgent?: string | null; maxAgeMs?: number; ifPasswordHash: string; newDevice?: boolean },
  now: number,
): Promise<NewSession | null>;
export async function createSession(
  db: Db,
  input: { userId: string; userAgent?: string | null; maxAgeMs?: number; ifPasswordHash?: string; newDevice?: boolean },
  now: number,
): Promise<NewSession | null> {
  const token = newToken("vrs_");
  const expiresAt = now + Math.min(SESSION_TTL_MS, input.maxAgeMs ?? SESSION_MAX_AGE_MS);
  const id = newId();
  // Kept: the sessions in use, most recently used first, then the never-used ones (a script signing in without
  // keeping its cookie), newest first. last_seen_at moves only hourly, so a browser in use could look older than a
  // burst of fresh sign-ins; its first use is recorded (authenticateSession), which sets it apart from them.
  const kept = db
    .select({ id: sessions.id })
    .from(sessions)
    .where(and(eq(sessions.userId, input.userId), ne(sessions.id, id)))
    .orderBy(sql`${sessions.lastSeenAt} = ${sessions.createdAt}`, desc(sessions.lastSeenAt), desc(sessions.createdAt))
    .limit(SESSIONS_PER_USER - 1);
  const tokenHash = await hashToken(token);
  const userAgent = input.userAgent?.slice(0, 200) ?? null;
  const guard = input.ifPasswordHash ?? null;
  const device = input.newDevice ? await newLoginDevice(db, input.userId, now, sql`EXISTS (SELECT 1 FROM sessions s WHERE s.id = ${id})`) : null;
  const [inserted, , remembered] = await db.batch([
    db.all<{ id: string }>(sql`
      INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, user_agent)
      SELECT ${id}, ${tokenHash}, u.id, ${now}, ${now}, ${expiresAt}, ${userAgent} FROM users u
      WHERE u.id = ${input.userId} AND (${guard} IS NULL OR (u.password_hash = ${guard} AND u.disabled_at IS NULL))
      RETURNING id`),
    // Only beside a session really made: a refused sign-in must not end the owner's least recently used one.
    db.delete(sessions).where(
      and(
        eq(sessions.userId, input.userId),
        notInArray(sessions.id, kept),
        ne(sessions.id, id),
        sql`EXISTS (SELECT 1 FROM sessions s WHERE s.id = ${id})`,
      ),
    ),
    ...(device?.statements ?? []),
  ]);
  if (inserted.length === 1) return { token, expiresAt, ...(device && remembered?.length === 1 ? { deviceToken: device.token } : {}) };
  if (guard === null) throw new NotFoundError("No such user");
  return null;
}

export interface SessionAuth {
  user: AuthenticatedUser;
  /** Set when the expiry moved forward, so the caller re-issues the cookie with the new lifetime. */
  renewedUntil: number | null;
}

/**
 * Resolves a session cookie to its user, sliding the expiry forward (never past sign-in + maxAgeMs); null for
 * unknown, expired, too old, or a disabled account's sessions.
 */
export async function authenticateSession(
  db: Db,
  token: string,
  now: number,
  maxAgeMs = SESSION_MAX_AGE_MS,
): Promise<SessionAuth | null> {
  const tokenHash = await hashToken(token);
  const [row] = await db
    .select({ id: users.id, email: users.email, role: users.role, lastSeenAt: sessions.lastSeenAt, createdAt: sessions.createdAt })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(
      and(
        eq(sessions.tokenHash, tokenHash),
        gt(sessions.expiresAt, now),
        gt(sessions.createdAt, now - maxAgeMs),
        isNull(users.disabledAt),
      ),
    );
  if (!row) return null;
  const user = { id: row.id, email: row.email, role: row.role };
  // Written hourly, and once at the first use: a session used since sign-in is then told apart from one never used
  // (createSession ends those first).
  const firstUse = row.lastSeenAt === row.createdAt && now > row.createdAt;
  if (now - row.lastSeenAt < SESSION_SLIDE_EVERY_MS && !firstUse) return { user, renewedUntil: null };
  const expiresAt = Math.min(now + SESSION_TTL_MS, row.createdAt + maxAgeMs);
  // CAS on last_seen_at: of two concurrent requests only one writes; both carry the same user either way.
  const renewed = await db
    .update(sessions)
    .set({ lastSeenAt: now, expiresAt })
    .where(and(eq(sessions.tokenHash, tokenHash), eq(sessions.lastSeenAt, row.lastSeenAt)))
    .returning({ id: sessions.id });
  return { user, renewedUntil: renewed.length ? expiresAt : null };
}

export async function deleteSession(db: Db, token: string): Promise<void> {
  await db.delete(sessions).where(eq(sessions.tokenHash, await hashToken(token)));
}

export interface SessionRow {
  id: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  userAgent: string | null;
  current: boolean;
}

/** The user's live sessions, most recently used first; `current` marks the one carrying `currentToken`. */
export async function listSessions(db: Db, input: { userId: string; currentToken?: string }, now: number): Promise<SessionRow[]> {
  const currentHash = input.currentToken ? await hashToken(input.currentToken) : "";
  return db
    .select({
      id: sessions.id,
      createdAt: sessions.createdAt,
      lastSeenAt: sessions.lastSeenAt,
      expiresAt: sessions.expiresAt,
      userAgent: sessions.userAgent,
      current: sql<boolean>`${sessions.tokenHash} = ${currentHash}`.mapWith(Boolean),
    })
    .from(sessions)
    .where(and(eq(sessions.userId, input.userId), gt(sessions.expiresAt, now)))
    .orderBy(desc(sessions.lastSeenAt), desc(sessions.id));
}

/** Ends one of the user's own sessions; someone else's session id is NotFound like an unknown one. */
export async function revokeSession(db: Db, input: { userId: string; id: string }): Promise<void> {
  const gone = await db
    .delete(sessions)
    .where(and(eq(sessions.id, input.id), eq(sessions.userId, input.userId)))
    .returning({ id: sessions.id });
  if (gone.length === 0) throw new NotFoundError("No such session");
}

/**
 * The delete that ends every session of a user except the one carrying `keepTokenHash`, only if the user's password
 * hash is now `ifPasswordHash` — batched after a CAS on the password, it runs exactly when that CAS won.
 */
export function endOtherSessions(db: Db, userId: string, keepTokenHash: string, ifPasswordHash: string) {
  return db
    .delete(sessions)
    .where(
      and(
        eq(sessions.userId, userId),
        ne(sessions.tokenHash, keepTokenHash),
        sql`exists (select 1 from ${users} where ${users.id} = ${userId} and ${users.passwordHash} = ${ifPasswordHash})`,
      ),
    );
}

/**
 * Removes up to `limit` sessions that expired before `now`; returns how many. Bounded so a pile of them (a burst of
 * sign-ins a week ago) is not deleted under one write lock that every sign-in and request waits behind.
 */
export async function deleteExpiredSessions(db: Db, now: number, limit = 1000): Promise<number> {
  const done = await db.run(sql`DELETE FROM ${sessions} WHERE ${sessions.id} IN (
    SELECT ${sessions.id} FROM ${sessions} WHERE ${lt(sessions.expiresAt, now)} LIMIT ${limit})`);
  return done.rowsAffected;
}
