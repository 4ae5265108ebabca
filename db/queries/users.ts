import { and, asc, count, eq, gte, isNotNull, isNull, notExists, sql } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError, ForbiddenError, NotFoundError } from "../errors";
import { newId } from "../ids";
import { hashPassword, verifyPassword } from "../passwords";
import { apiTokens, sessions, users } from "../schema";

export type Role = "admin" | "user";
export interface UserRow {
  id: string;
  email: string;
  role: Role;
  createdAt: number;
  disabledAt?: number | null;
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** How long after an account's creation the same request again is answered with it (see createUser). */
export const CREATE_REPEAT_MS = 15 * 60 * 1000;

/**
 * Creates an account; a taken email is a ConflictError (decided by the unique index, not a prior read).
 *
 * With `answerRepeat` (the API): the same request again — its reply was lost after the insert committed, or a double
 * submit — is answered with the account it made: same email, role and password, within CREATE_REPEAT_MS of the
 * creation, still enabled and never used (no session, no token). Before, the admin read "already exists" for an
 * account that had just been created as asked, and could reset its password to be sure, signing the new user out.
 * A shell's `user:create` run twice is told the account exists.
 */
export async function createUser(
  db: Db,
  input: { email: string; password: string; role: Role; pepper?: string },
  now = Date.now(),
  opts: { answerRepeat?: boolean } = {},
): Promise<UserRow> {
  const row = { id: newId(), email: normalizeEmail(input.email), role: input.role, createdAt: now };
  const passwordHash = await hashPassword(input.password, input.pepper);
  const inserted = await db
    .insert(users)
    .values({ ...row, passwordHash })
    .onConflictDoNothing({ target: users.email })
    .returning({ id: users.id });
  if (inserted.length > 0) return row;
  if (!opts.answerRepeat) throw new ConflictError("email_taken", `An account for ${row.email} already exists`);
  const [made] = await db
    .select({ id: users.id, email: users.email, role: users.role, createdAt: users.createdAt, passwordHash: users.passwordHash })
    .from(users)
    .where(
      and(
        eq(users.email, row.email),
        eq(users.role, input.role),
        isNull(users.disabledAt),
        gte(users.createdAt, now - CREATE_REPEAT_MS),
        // Untouched since: never signed in, no token. Once its owner uses it (and may have set a password of their
        // own), a 201 here would tell an admin whether a guessed password is theirs.
        notExists(db.select({ one: sql`1` }).from(sessions).where(eq(sessions.userId, users.id))),
        notExists(db.select({ one: sql`1` }).from(apiTokens).where(eq(apiTokens.userId, users.id))),
      ),
    );
  if (made && (await verifyPassword(input.password, made.passwordHash, input.pepper))) {
    return { id: made.id, email: made.email, role: made.role, createdAt: made.createdAt };
  }
  throw new ConflictError("email_taken", `An account for ${row.email} already exists`);
}

export async function countUsers(db: Db): Promise<number> {
  const [row] = await db.select({ n: count() }).from(users);
  return row?.n ?? 0;
}

export async function findUserByEmail(db: Db, email: string) {
  return db.query.users.findFirst({ where: eq(users.email, normalizeEmail(email)) });
}

export async function findUserById(db: Db, id: string): Promise<UserRow | undefined> {
  return db.query.users.findFirst({
    columns: { id: true, email: true, role: true, createdAt: true },
    where: eq(users.id, id),
  });
}

/** All accounts, oldest first (admin view; the user count is small). */
export async function listUsers(db: Db): Promise<UserRow[]> {
  return db
    .select({ id: users.id, email: users.email, role: users.role, createdAt: users.createdAt, disabledAt: users.disabledAt })
    .from(users)
    .orderBy(asc(users.createdAt), asc(users.id));
}

/**
 * Disables or re-enables an account (admin). Disabling is a CAS on `disabled_at IS NULL` batched with deleting the
 * account's sessions, so it takes effect at once: cookies are gone, and tokens are refused because every token
 * check joins on `disabled_at IS NULL`. An admin cannot disable their own account (nobody could undo it).
 */
export async function setUserDisabled(
  db: Db,
  input: { actorId: string; userId: string; disabled: boolean },
  now: number,
): Promise<UserRow> {
  if (input.disabled && input.actorId === input.userId) {
    throw new ConflictError("cannot_disable_self", "You cannot disable your own account");
  }
  const columns = { id: users.id, email: users.email, role: users.role, createdAt: users.createdAt, disabledAt: users.disabledAt };
  if (input.disabled) {
    // The actor must still be an enabled admin when the row changes: two admins disabling each other at the same
    // moment both passed their sign-in check, and without this both succeeded and no admin was left.
    const actorEnabled = sql`EXISTS (SELECT 1 FROM users a WHERE a.id = ${input.actorId} AND a.role = 'admin' AND a.disabled_at IS NULL)`;
    const [updated] = await db.batch([
      db.update(users).set({ disabledAt: now }).where(and(eq(users.id, input.userId), isNull(users.disabledAt), actorEnabled)).returning(columns),
      db
        .delete(sessions)
        .where(and(eq(sessions.userId, input.userId), sql`EXISTS (SELECT 1 FROM users u WHERE u.id = ${input.userId} AND u.disabled_at IS NOT NULL)`)),
    ]);
    if (updated[0]) return updated[0];
    const [target] = await db.select(columns).from(users).where(eq(users.id, input.userId));
    if (target && target.disabledAt === null) throw new ForbiddenError("Your account can no longer disable accounts");
  } else {
    const [, updated] = await db.batch([
      // Its never-started jobs were held, not waiting for a runner: their wait for one starts now (before the CAS,
      // and only while the account is still disabled, so a repeated enable changes nothing).
      db.run(sql`UPDATE jobs SET queued_at = ${now} WHERE user_id = ${input.userId} AND status = 'queued'
        AND EXISTS (SELECT 1 FROM users u WHERE u.id = ${input.userId} AND u.disabled_at IS NOT NULL)`),
      db
        .update(users)
        .set({ disabledAt: null })
        .where(and(eq(users.id, input.userId), isNotNull(users.disabledAt)))
        .returning(columns),
    ]);
    if (updated[0]) return updated[0];
  }
  // Nothing changed: either no such account, or it is already in the asked state (idempotent).
  const [row] = await db.select(columns).from(users).where(eq(users.id, input.userId));
  if (!row) throw new NotFoundError("No such user");
  return row;
}
