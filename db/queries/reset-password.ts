import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../client";
import { NotFoundError } from "../errors";
import { hashPassword } from "../passwords";
import { loginDevices, loginFailures, sessions, users } from "../schema";
import { accountKey } from "./login-attempts";
import { normalizeEmail, type UserRow } from "./users";

/**
 * Sets a new password for an existing account from a shell (`npm run user:create -- --reset`): the way back in for
 * an owner — often the only admin — who lost theirs. Like a password change it ends every session and forgets every
 * remembered browser (someone who knew the old password may hold them), and it lifts the account's login throttle
 * (the owner's own wrong guesses); API tokens stay. One batch, each step conditional on the new hash being the one
 * stored, so a step never runs for a reset that did not happen. 404 when there is no such account.
 */
export async function resetPassword(db: Db, input: { email: string; password: string; pepper?: string }): Promise<UserRow> {
  const email = normalizeEmail(input.email);
  const passwordHash = await hashPassword(input.password, input.pepper);
  const applied = sql`exists (select 1 from ${users} where ${users.email} = ${email} and ${users.passwordHash} = ${passwordHash})`;
  const owner = sql`(select ${users.id} from ${users} where ${users.email} = ${email})`;
  const [updated] = await db.batch([
    db
      .update(users)
      .set({ passwordHash })
      .where(eq(users.email, email))
      .returning({ id: users.id, email: users.email, role: users.role, createdAt: users.createdAt, disabledAt: users.disabledAt }),
    db.delete(sessions).where(and(sql`${sessions.userId} = ${owner}`, applied)),
    db.delete(loginDevices).where(and(sql`${loginDevices.userId} = ${owner}`, applied)),
    db.delete(loginFailures).where(and(eq(loginFailures.key, accountKey(email)), applied)),
  ]);
  const user = updated[0];
  if (!user) throw new NotFoundError(`No account for ${email}`);
  return user;
}
