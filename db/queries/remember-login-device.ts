import { and, eq, notInArray, sql } from "drizzle-orm";
import type { Db } from "../client";
import { hashToken, newId, newToken } from "../ids";
import { loginDevices } from "../schema";

/** Browsers remembered per account; the least recently used one is forgotten first. */
export const LOGIN_DEVICES_PER_USER = 10;

/**
 * After a successful login: refreshes the device `deviceId` (the browser presented its cookie), or remembers a new
 * one and returns its token for the `vr_device` cookie. Keeps at most LOGIN_DEVICES_PER_USER per user.
 */
export async function rememberLoginDevice(db: Db, userId: string, deviceId: string | null, now: number): Promise<string | null> {
  if (deviceId) {
    await db.update(loginDevices).set({ lastUsedAt: now }).where(and(eq(loginDevices.id, deviceId), eq(loginDevices.userId, userId)));
    return null;
  }
  const token = newToken("vrd_");
  const newest = db
    .select({ id: loginDevices.id })
    .from(loginDevices)
    .where(eq(loginDevices.userId, userId))
    .orderBy(sql`${loginDevices.lastUsedAt} desc`)
    .limit(LOGIN_DEVICES_PER_USER);
  await db.batch([
    db.insert(loginDevices).values({ id: newId(), userId, tokenHash: await hashToken(token), createdAt: now, lastUsedAt: now }),
    db.delete(loginDevices).where(and(eq(loginDevices.userId, userId), notInArray(loginDevices.id, newest))),
  ]);
  return token;
}
