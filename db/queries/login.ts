import { and, eq, lt, sql } from "drizzle-orm";
import type { Db } from "../client";
import { TooManyRequestsError, UnauthorizedError } from "../errors";
import { hashPassword, verifyPassword } from "../passwords";
import { loginFailures } from "../schema";
import { createSession, type AuthenticatedUser, type NewSession } from "./sessions";
import { findUserByEmail, normalizeEmail } from "./users";

/** After this many failed attempts for one (email, IP) inside the window, logins answer 429 until it ends. */
export const LOGIN_MAX_FAILURES = 5;
export const LOGIN_WINDOW_MS = 15 * 60 * 1000;

let dummyHash: Promise<string> | undefined;

/**
 * Checks credentials and opens a session. Throttled per (email, IP) through `login_failures`; an unknown email
 * still pays for one PBKDF2 verification so response time does not reveal which accounts exist.
 */
export async function login(
  db: Db,
  input: { email: string; password: string; ip: string },
  now: number,
): Promise<{ user: AuthenticatedUser; session: NewSession }> {
  const email = normalizeEmail(input.email);
  const [failures] = await db
    .select()
    .from(loginFailures)
    .where(and(eq(loginFailures.email, email), eq(loginFailures.ip, input.ip)));
  if (failures && failures.count >= LOGIN_MAX_FAILURES && failures.windowStartedAt + LOGIN_WINDOW_MS > now) {
    const retryAfter = Math.ceil((failures.windowStartedAt + LOGIN_WINDOW_MS - now) / 1000);
    throw new TooManyRequestsError("Too many failed sign-in attempts; try again later", retryAfter, "too_many_attempts");
  }

  const user = await findUserByEmail(db, email);
  dummyHash ??= hashPassword("not-a-real-password");
  const ok = await verifyPassword(input.password, user?.passwordHash ?? (await dummyHash));
  if (!user || !ok) {
    await recordLoginFailure(db, email, input.ip, now);
    throw new UnauthorizedError("Wrong email or password", "invalid_credentials");
  }

  await db.delete(loginFailures).where(and(eq(loginFailures.email, email), eq(loginFailures.ip, input.ip)));
  const session = await createSession(db, user.id, now);
  return { user: { id: user.id, email: user.email, role: user.role }, session };
}

/** One upsert: a window older than LOGIN_WINDOW_MS restarts at 1, so concurrent failures all count. */
async function recordLoginFailure(db: Db, email: string, ip: string, now: number): Promise<void> {
  const stale = sql`${loginFailures.windowStartedAt} <= ${now - LOGIN_WINDOW_MS}`;
  await db
    .insert(loginFailures)
    .values({ email, ip, count: 1, windowStartedAt: now })
    .onConflictDoUpdate({
      target: [loginFailures.email, loginFailures.ip],
      set: {
        count: sql`case when ${stale} then 1 else ${loginFailures.count} + 1 end`,
        windowStartedAt: sql`case when ${stale} then ${now} else ${loginFailures.windowStartedAt} end`,
      },
    });
}

/** Forgets failure windows that ended before `now`; returns how many. */
export async function pruneLoginFailures(db: Db, now: number): Promise<number> {
  const gone = await db
    .delete(loginFailures)
    .where(lt(loginFailures.windowStartedAt, now - LOGIN_WINDOW_MS))
    .returning({ email: loginFailures.email });
  return gone.length;
}
