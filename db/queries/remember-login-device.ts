import { and, eq, notInArray, sql, type SQL } from "drizzle-orm";
import type { Db } from "../client";
import { hashToken, newId, newToken } from "../ids";
import { loginDevices } from "../schema";

/** Browsers remembered per account; the least recently used one is forgotten first. */
export const LOGIN_DEVICES_PER_USER = 10;

/**
 * The statements that remember a new browser of `userId` while `condition` (on the user row `u`) holds, for a batch
 * of the caller's, keeping at most LOGIN_DEVICES_PER_USER; and the token of its `vr_device` cookie, good only when
 * the insert (the batch's first result here) returned its row.
 */
export async function newLoginDevice(db: Db, userId: string, now: number, condition: SQL) {
  const token = newToken("vrd_");
  const id = newId();
  const newest = db
    .select({ id: loginDevices.id })
    .from(loginDevices)
    .where(eq(loginDevices.userId, userId))
    .orderBy(sql`${loginDevices.lastUsedAt} desc`)
    .limit(LOGIN_DEVICES_PER_USER);
  const statements = [
    db.all<{ id: string }>(sql`
      INSERT INTO login_devices (id, user_id, token_hash, created_at, last_used_at)
      SELECT ${id}, u.id, ${await hashToken(token)}, ${now}, ${now} FROM users u WHERE u.id = ${userId} AND ${condition}
      RETURNING id`),
    db.delete(loginDevices).where(
      and(eq(loginDevices.userId, userId), notInArray(loginDevices.id, newest), sql`EXISTS (SELECT 1 FROM login_devices d WHERE d.id = ${id})`),
    ),
  ] as const;
  return { token, statements };
}

/**
 * After a password change: remembers the browser that made it (its token for the `vr_device` cookie) while the
 * account still has the new hash (`ifPasswordHash`) and is enabled, else null: a reset right after the change
 * forgets every remembered browser, and one remembered after it would take the guesses of whoever holds it off
 * the account's lock. A sign-in remembers its browser in its session's batch (createSession).
 */
export async function rememberLoginDevice(db: Db, userId: string, now: number, ifPasswordHash: string): Promise<string | null> {
  const device = await newLoginDevice(db, userId, now, sql`u.password_hash = ${ifPasswordHash} AND u.disabled_at IS NULL`);
  const [inserted] = await db.batch(device.statements);
  return inserted.length === 1 ? device.token : null;
}

/** A sign-in from a browser remembered before (its cookie): its lifetime in the list starts over. */
export async function touchLoginDevice(db: Db, userId: string, deviceId: string, now: number): Promise<void> {
  await db.update(loginDevices).set({ lastUsedAt: now }).where(and(eq(loginDevices.id, deviceId), eq(loginDevices.userId, userId)));
}
