import { and, eq, sql, type SQL } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError, ForbiddenError, NotFoundError } from "../errors";
import { hashPassword } from "../passwords";
import { loginDevices, loginFailures, sessions, users } from "../schema";
import { accountKey } from "./login-attempts";
import { normalizeEmail, type UserRow } from "./users";

/** Who sets the password: an operator at a shell (by email), or an admin through the API (by id, checked). */
export type ResetTarget = { email: string } | { userId: string; actorId: string };

/**
 * Sets a new password for an existing account without its current one: from a shell (`npm run user:create --
 * --reset`, the way back in for an owner — often the only admin — who lost theirs) or by an admin for a user who
 * forgot theirs (`POST /api/users/:id/password`). Like a password change it ends every session and forgets every
 * remembered browser (someone who knew the old password may hold them), and it lifts the account's login throttle;
 * API tokens and the role stay. One batch, every later step conditional on the new hash being the one stored, so
 * none runs for a reset that did not happen. An admin's reset also requires the admin to be still enabled in the
 * same statement (as disabling does), and not to be resetting their own account (that is a password change, which
 * asks for the current password: a borrowed session must not lock its owner out). 404 when there is no such account.
 */
export async function resetPassword(db: Db, target: ResetTarget & { password: string; pepper?: string }): Promise<UserRow> {
  if ("actorId" in target && target.actorId === target.userId) {
    throw new ConflictError("cannot_reset_self", "Change your own password on your account page (it asks for the current one)");
  }
  const passwordHash = await hashPassword(target.password, target.pepper);
  const which: SQL = "email" in target ? sql`${users.email} = ${normalizeEmail(target.email)}` : sql`${users.id} = ${target.userId}`;
  const actorEnabled =
    "actorId" in target
      ? sql`EXISTS (SELECT 1 FROM users a WHERE a.id = ${target.actorId} AND a.role = 'admin' AND a.disabled_at IS NULL)`
      : undefined;
  const owner = sql`(select ${users.id} from ${users} where ${which})`;
  const applied = sql`exists (select 1 from ${users} where ${which} and ${users.passwordHash} = ${passwordHash})`;
  // The account's login-throttle key, built in SQL from the stored email (an admin's reset knows only the id).
  const throttleKey = sql`(select ${accountKey("")} || ${users.email} from ${users} where ${which})`;
  const [updated] = await db.batch([
    db
      .update(users)
      .set({ passwordHash })
      .where(and(which, actorEnabled))
      .returning({ id: users.id, email: users.email, role: users.role, createdAt: users.createdAt, disabledAt: users.disabledAt }),
    db.delete(sessions).where(and(sql`${sessions.userId} = ${owner}`, applied)),
    db.delete(loginDevices).where(and(sql`${loginDevices.userId} = ${owner}`, applied)),
    db.delete(loginFailures).where(and(sql`${loginFailures.key} = ${throttleKey}`, applied)),
  ]);
  const user = updated[0];
  if (user) return user;
  if ("email" in target) throw new NotFoundError(`No account for ${normalizeEmail(target.email)}`);
  const [exists] = await db.select({ id: users.id }).from(users).where(eq(users.id, target.userId));
  if (!exists) throw new NotFoundError("No such user");
  throw new ForbiddenError("Your account can no longer set passwords");
}
