import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../client";
import { NotFoundError, ValidationError } from "../errors";
import { hashToken } from "../ids";
import { hashPassword, verifyPassword } from "../passwords";
import { loginDevices, users } from "../schema";
import { ACCOUNT_RULE, clearLoginAttempts, passwordChangeKey, reserveLoginAttempt } from "./login-attempts";
import { rememberLoginDevice } from "./remember-login-device";
import { endOtherSessions } from "./sessions";

/**
 * Changes a user's password after checking the current one, and ends every other session of theirs (the one
 * making the change, `keepToken`, stays). Remembered browsers are forgotten, except the one making the change (its
 * `vr_device` token, `deviceToken`), which just proved the password: forgetting it too left its owner under the
 * account's login lock everywhere, the moment they reacted to guesses at it. A browser session without a device
 * cookie gets a new one (returned, for the cookie). Guesses at the current password are throttled like logins (a counter per
 * user), so a stolen session cannot be used to brute-force it. The update is a CAS on the hash that
 * was verified: of two concurrent changes only one wins, the other sees a conflict as a wrong current password.
 * A change whose new password is already the account's is answered as done (nothing written): the same request
 * sent again after its reply was lost, or twice at once, must not tell its sender the password they just proved is
 * wrong. That check is a guess at the password like `currentPassword`, so it takes an attempt of the same throttle.
 */
export async function changePassword(
  db: Db,
  input: { userId: string; currentPassword: string; newPassword: string; keepToken?: string; deviceToken?: string; pepper?: string },
  now: number,
): Promise<{ deviceToken: string | null }> {
  const [user] = await db.select({ email: users.email, passwordHash: users.passwordHash }).from(users).where(eq(users.id, input.userId));
  if (!user) throw new NotFoundError("No such user");
  // Its own counter (same rule): guesses at the account's login from elsewhere must not stop its owner changing it.
  const key = passwordChangeKey(input.userId);
  await reserveLoginAttempt(db, key, ACCOUNT_RULE, now);
  if (!(await verifyPassword(input.currentPassword, user.passwordHash, input.pepper))) {
    // A second guess (at newPassword): it takes an attempt of its own, or a stolen session would test two
    // passwords per throttled attempt.
    await reserveLoginAttempt(db, key, ACCOUNT_RULE, now);
    if (await verifyPassword(input.newPassword, user.passwordHash, input.pepper)) return alreadyDone(db, key);
    throw new ValidationError("currentPassword: does not match your current password", "currentPassword", "wrong_password");
  }
  const passwordHash = await hashPassword(input.newPassword, input.pepper);
  const keepHash = input.keepToken ? await hashToken(input.keepToken) : "";
  const keepDeviceHash = input.deviceToken ? await hashToken(input.deviceToken) : "";
  const [changed] = await db.batch([
    db
      .update(users)
      .set({ passwordHash })
      .where(and(eq(users.id, input.userId), eq(users.passwordHash, user.passwordHash)))
      .returning({ id: users.id }),
    endOtherSessions(db, input.userId, keepHash, passwordHash),
    // Browsers remembered under the old password stop being exempt from the account's login throttle (someone who
    // knew it may hold their cookies); the owner's browser is remembered again at its next sign-in.
    db.delete(loginDevices).where(
      sql`${loginDevices.userId} = ${input.userId} AND ${loginDevices.tokenHash} <> ${keepDeviceHash}
        AND EXISTS (SELECT 1 FROM users WHERE id = ${input.userId} AND password_hash = ${passwordHash})`,
    ),
  ]);
  if (changed.length === 0) {
    const [current] = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, input.userId));
    if (current && (await verifyPassword(input.newPassword, current.passwordHash, input.pepper))) return alreadyDone(db, key);
    throw new ValidationError("currentPassword: the password changed meanwhile; try again", "currentPassword", "wrong_password");
  }
  await clearLoginAttempts(db, key);
  // An API token changed it: no browser to remember.
  if (!input.keepToken) return { deviceToken: null };
  const [kept] = keepDeviceHash
    ? await db.select({ id: loginDevices.id }).from(loginDevices).where(and(eq(loginDevices.userId, input.userId), eq(loginDevices.tokenHash, keepDeviceHash)))
    : [];
  // Not remembered when a reset came right after this change (that forgets every browser).
  return { deviceToken: kept ? null : await rememberLoginDevice(db, input.userId, now, passwordHash) };
}

async function alreadyDone(db: Db, key: string): Promise<{ deviceToken: null }> {
  await clearLoginAttempts(db, key);
  return { deviceToken: null };
}
