import { and, eq, gt, lt } from "drizzle-orm";
import type { Db } from "../client";
import { hashToken, newId, newToken } from "../ids";
import { sessions, users } from "../schema";
import type { Role } from "./users";

/** Sessions live 7 days after their last use (sliding expiry). */
export const SESSION_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/**
 * The expiry is pushed forward at most this often, so an active browser costs one write per hour
 * rather than one per request.
 */
export const SESSION_SLIDE_EVERY_MS = 60 * 60 * 1000;

export interface AuthenticatedUser {
  id: string;
  email: string;
  role: Role;
}

export interface NewSession {
  /** The raw cookie value; only its hash is stored. */
  token: string;
  expiresAt: number;
}

export async function createSession(db: Db, userId: string, now: number): Promise<NewSession> {
  const token = newToken("vrs_");
  const expiresAt = now + SESSION_TTL_MS;
  await db.insert(sessions).values({
    id: newId(),
    tokenHash: await hashToken(token),
    userId,
    createdAt: now,
    lastSeenAt: now,
    expiresAt,
  });
  return { token, expiresAt };
}

export interface SessionAuth {
  user: AuthenticatedUser;
  /** Set when the expiry moved forward, so the caller re-issues the cookie with the new lifetime. */
  renewedUntil: number | null;
}

/** Resolves a session cookie to its user, sliding the expiry forward; null for unknown or expired tokens. */
export async function authenticateSession(db: Db, token: string, now: number): Promise<SessionAuth | null> {
  const tokenHash = await hashToken(token);
  const [row] = await db
    .select({ id: users.id, email: users.email, role: users.role, lastSeenAt: sessions.lastSeenAt })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(and(eq(sessions.tokenHash, tokenHash), gt(sessions.expiresAt, now)));
  if (!row) return null;
  const user = { id: row.id, email: row.email, role: row.role };
  if (now - row.lastSeenAt < SESSION_SLIDE_EVERY_MS) return { user, renewedUntil: null };
  const expiresAt = now + SESSION_TTL_MS;
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

/** Removes sessions that expired before `now`; returns how many. */
export async function deleteExpiredSessions(db: Db, now: number): Promise<number> {
  const gone = await db.delete(sessions).where(lt(sessions.expiresAt, now)).returning({ id: sessions.id });
  return gone.length;
}
