import { and, eq, notInArray, sql } from "drizzle-orm";
import type { Db } from "../client";
import { hashToken, newId, newToken } from "../ids";
import { loginDevices } from "../schema";

/** Browsers remembered per account; the least recently used one is forgotten first. */
export const LOGIN_DEVICES_PER_USER = 10;

/**
 * After a successful login: refreshes the device `deviceId` (the browser presented its cookie), or remembers a new
 * one and returns its token for the `vr_device` cookie. Keeps at most LOGIN_DEVICES_PER_USER per user.
 *
 * A new device is remembered only while the account still has the password hash the login checked
 * (`ifPasswordHash`) and is not disabled, else null: a reset or change between the sign-in's session and this
 * forgets every remembered browser, and one remembered after it would hand whoever knew the old password a cookie
 * that takes their guesses at the new one off the account's lock.
 */
export async function rememberLoginDevice(db: Db, userId: string, deviceId: string | null, now: number, ifPasswordHash: string): Promise<string | null> {
  if (deviceId) {
    await db.update(loginDevices).set({ lastUsedAt: now }).where(and(eq(loginDevices.id, deviceId), eq(loginDevices.userId, userId)));
    return null;
  }
  const token = newToken("vrd_");
  const id = newId();
  const newest = db
    .select({ id: loginDevices.id })
    .from(loginDevices)
    .where(eq(loginDevices.userId, userId))
    .orderBy(sql`${loginDevices.lastUsedAt} desc`)
    .limit(LOGIN_DEVICES_PER_USER);
  const [inserted] = await db.batch([
    db.all<{ id: string }>(sql`
      INSERT INTO login_devices (id, user_id, token_hash, created_at, last_used_at)
      SELECT ${id}, u.id, ${await hashToken(token)}, ${now}, ${now} FROM users u
      WHERE u.id = ${userId} AND u.password_hash = ${ifPasswordHash} AND u.disabled_at IS NULL
      RETURNING id`),
    db.delete(loginDevices).where(and(eq(loginDevices.userId, userId), notInArray(loginDevices.id, newest))),
  ]);
  return inserted.length === 1 ? token : null;
}
