import { and, eq } from "drizzle-orm";
import type { Db } from "../client";
import { hashToken } from "../ids";
import { loginDevices, users } from "../schema";

/**
 * The device id behind a `vr_device` token, when that browser signed in to the account `email` before; null for an
 * unknown token or one of another account (a device cookie only ever speaks for the account it was issued to).
 */
export async function findLoginDevice(db: Db, token: string, email: string): Promise<string | null> {
  const [row] = await db
    .select({ id: loginDevices.id })
    .from(loginDevices)
    .innerJoin(users, eq(users.id, loginDevices.userId))
    .where(and(eq(loginDevices.tokenHash, await hashToken(token)), eq(users.email, email)));
  return row?.id ?? null;
}
