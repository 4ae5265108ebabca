import { asc, count, eq } from "drizzle-orm";
import type { Db } from "../client";
import { ConflictError } from "../errors";
import { newId } from "../ids";
import { hashPassword } from "../passwords";
import { users } from "../schema";

export type Role = "admin" | "user";
export interface UserRow {
  id: string;
  email: string;
  role: Role;
  createdAt: number;
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Creates an account; a taken email is a ConflictError (decided by the unique index, not a prior read). */
export async function createUser(
  db: Db,
  input: { email: string; password: string; role: Role },
  now = Date.now(),
): Promise<UserRow> {
  const row = { id: newId(), email: normalizeEmail(input.email), role: input.role, createdAt: now };
  const passwordHash = await hashPassword(input.password);
  const inserted = await db
    .insert(users)
    .values({ ...row, passwordHash })
    .onConflictDoNothing({ target: users.email })
    .returning({ id: users.id });
  if (inserted.length === 0) throw new ConflictError("email_taken", `An account for ${row.email} already exists`);
  return row;
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
    .select({ id: users.id, email: users.email, role: users.role, createdAt: users.createdAt })
    .from(users)
    .orderBy(asc(users.createdAt), asc(users.id));
}
