import { eq, lt, sql } from "drizzle-orm";
import type { Db } from "../client";
import { TooManyRequestsError } from "../errors";
import { loginFailures as t } from "../schema";

export interface ThrottleRule {
  /** Attempts allowed before the first delay. */
  free: number;
  /** First delay; each further attempt doubles it, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * Per account, across every address: 5 attempts, then 30 s, 1 min, 2 min … capped at 15 min. Someone guessing at an
 * account can keep this lock on (one wrong guess each time it lapses), so a browser that signed in to the account
 * before is not judged by it: it has a counter of its own under the same rule (deviceKey).
 */
export const ACCOUNT_RULE: ThrottleRule = { free: 5, baseDelayMs: 30_000, maxDelayMs: 15 * 60_000 };
/** Per client address (IPv6: per /64), across accounts; successful logins are refunded, so this counts failures. */
export const ADDRESS_RULE: ThrottleRule = { free: 20, baseDelayMs: 30_000, maxDelayMs: 15 * 60_000 };
/** A counter untouched this long starts again from zero (longer than the longest delay). */
export const LOGIN_QUIET_RESET_MS = 60 * 60_000;

export const accountKey = (email: string) => `account:${email}`;
/** A browser that signed in to the account before (db/queries/find-login-device.ts): its own counter, same rule. */
export const deviceKey = (deviceId: string) => `device:${deviceId}`;
/** Guesses at the current password on POST /api/me/password: only holders of a session of the user can add to it. */
export const passwordChangeKey = (userId: string) => `password-change:${userId}`;
export const addressKey = (group: string) => `address:${group}`;

/**
 * Reserves one login attempt under `key` before any password is checked, in one upsert: the increment and the
 * lock test are a single statement, so of N concurrent attempts exactly `free` pass before the lock is set.
 * Reaching `free` (and every attempt after a lock lapses) sets `locked_until` a growing delay ahead. A locked
 * key writes nothing (the WHERE fails) and answers 429 with the time left.
 */
export async function reserveLoginAttempt(db: Db, key: string, rule: ThrottleRule, now: number): Promise<void> {
  const next = sql`(case when ${t.updatedAt} <= ${now - LOGIN_QUIET_RESET_MS} then 1 else ${t.attempts} + 1 end)`;
  // `<<` instead of pow(): SQLite's math functions are optional at build time. The shift is bounded to stay an integer.
  const lock = sql`(case when ${next} >= ${rule.free}
    then ${now} + min(${rule.maxDelayMs}, ${rule.baseDelayMs} << min(${next} - ${rule.free}, 20)) else 0 end)`;
  const reserved = await db
    .insert(t)
    .values({ key, attempts: 1, lockedUntil: rule.free <= 1 ? now + rule.baseDelayMs : 0, updatedAt: now })
    .onConflictDoUpdate({ target: t.key, set: { attempts: next, lockedUntil: lock, updatedAt: now }, setWhere: sql`${t.lockedUntil} <= ${now}` })
    .returning({ attempts: t.attempts });
  if (reserved.length > 0) return;
  const [row] = await db.select({ lockedUntil: t.lockedUntil }).from(t).where(eq(t.key, key));
  const retryAfter = Math.max(1, Math.ceil(((row?.lockedUntil ?? now) - now) / 1000));
  throw new TooManyRequestsError("Too many sign-in attempts; try again later", retryAfter, "too_many_attempts");
}

/**
 * Gives back one reserved attempt (a successful login, or an attempt refused by another limit before it was
 * evaluated). Dropping below `free` lifts the lock that attempt may have set.
 */
export async function refundLoginAttempt(db: Db, key: string, rule: ThrottleRule): Promise<void> {
  await db
    .update(t)
    .set({
      attempts: sql`max(${t.attempts} - 1, 0)`,
      lockedUntil: sql`case when ${t.attempts} - 1 < ${rule.free} then 0 else ${t.lockedUntil} end`,
    })
    .where(eq(t.key, key));
}

/** A successful login forgets the account's counter. */
export async function clearLoginAttempts(db: Db, key: string): Promise<void> {
  await db.delete(t).where(eq(t.key, key));
}

/**
 * Forgets up to `limit` counters that have been quiet long enough to reset anyway and hold no lock; returns how
 * many. Bounded because anyone can add rows (a login reserves `account:<email>` for any email, before the user is
 * looked up): one delete of all of them held the write lock for as long as the pile was big.
 */
export async function pruneLoginAttempts(db: Db, now: number, limit = 1000): Promise<number> {
  const done = await db.run(sql`DELETE FROM ${t} WHERE ${t.key} IN (
    SELECT ${t.key} FROM ${t} WHERE ${lt(t.updatedAt, now - LOGIN_QUIET_RESET_MS)} AND ${t.lockedUntil} <= ${now} LIMIT ${limit})`);
  return done.rowsAffected;
}
