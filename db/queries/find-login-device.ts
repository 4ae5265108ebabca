import { and, eq, gt } from "drizzle-orm";
import type { Db } from "../client";
import { hashToken } from "../ids";
import { loginDevices, users } from "../schema";

/** A remembered browser not used to sign in for this long is a stranger again (its cookie's lifetime too). */
export const LOGIN_DEVICE_MAX_IDLE_MS = 365 * 24 * 60 * 60 * 1000;

/**
 * The device id behind a `vr_device` token, when that browser signed in to the account `email` within the last
 * year; null for an unknown, idle or forgotten token or one of another account (a device cookie only ever speaks
 * for the account it was issued to). A password change forgets every device of the account.
 */
export async function findLoginDevice(db: Db, token: string, email: string, now: number): Promise<string | null> {
  const [row] = await db
    .select({ id: loginDevices.id })
    .from(loginDevices)
    .innerJoin(users, eq(users.id, loginDevices.userId))
    .where(and(eq(loginDevices.tokenHash, await hashToken(token)), eq(users.email, email), gt(loginDevices.lastUsedAt, now - LOGIN_DEVICE_MAX_IDLE_MS)));
  return row?.id ?? null;
}
