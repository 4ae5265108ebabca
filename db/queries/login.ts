import { and, eq } from "drizzle-orm";
import type { Db } from "../client";
import { ForbiddenError, UnauthorizedError } from "../errors";
import { hashPassword, needsRehash, verifyPassword } from "../passwords";
import { users } from "../schema";
import {
  ACCOUNT_RULE,
  accountKey,
  deviceKey,
  ADDRESS_RULE,
  addressKey,
  clearLoginAttempts,
  refundLoginAttempt,
  reserveLoginAttempt,
} from "./login-attempts";
import { findLoginDevice } from "./find-login-device";
import { touchLoginDevice } from "./remember-login-device";
import { createSession, deleteSession, type AuthenticatedUser, type NewSession } from "./sessions";
import { findUserByEmail, normalizeEmail } from "./users";

let dummyHash: Promise<string> | undefined;

export interface LoginInput {
  email: string;
  password: string;
  /** Throttle group of the client address (edge/lib/client-address.ts), or null when none is known. */
  address: string | null;
  /** The session cookie the browser already had: a login replaces it (session fixation). */
  previousToken?: string;
  /** The browser's `vr_device` cookie, if any (a browser that signed in before: see findLoginDevice). */
  deviceToken?: string;
  userAgent?: string | null;
  pepper?: string;
  maxAgeMs?: number;
}

/**
 * Checks credentials and opens a new session. The attempt is reserved before the (costly) password check — per
 * client address when one is known, then per account — so a burst of guesses is refused with 429 instead of
 * being evaluated. An unknown email still pays for one PBKDF2 verification so response time does not reveal
 * which accounts exist. A hash weaker than today's (fewer iterations, no pepper) is replaced on success.
 */
export async function login(
  db: Db,
  input: LoginInput,
  now: number,
): Promise<{ user: AuthenticatedUser; session: NewSession; deviceToken: string | null }> {
  const email = normalizeEmail(input.email);
  // A browser that signed in to this account before counts on its own: guesses from elsewhere cannot lock it out.
  const deviceId = input.deviceToken ? await findLoginDevice(db, input.deviceToken, email, now) : null;
  const account = deviceId ? deviceKey(deviceId) : accountKey(email);
  // A recognised browser skips the address rule too: its own counter already bounds its guesses (for this one
  // account), and otherwise anyone behind the same NAT, VPN exit or IPv6 /64 could lock its owner out with
  // 20 guesses at made-up emails.
  const address = input.address && !deviceId ? addressKey(input.address) : null;
  // Address first: a client already throttled by address cannot push anyone's account counter.
  if (address) await reserveLoginAttempt(db, address, ADDRESS_RULE, now);
  try {
    await reserveLoginAttempt(db, account, ACCOUNT_RULE, now);
  } catch (err) {
    // Not evaluated, so it does not count against the address (an owner retrying a locked account from an
    // office NAT must not throttle colleagues).
    if (address) await refundLoginAttempt(db, address, ADDRESS_RULE);
    throw err;
  }

  const user = await findUserByEmail(db, email);
  dummyHash ??= hashPassword("not-a-real-password");
  const ok = await verifyPassword(input.password, user?.passwordHash ?? (await dummyHash), input.pepper);
  if (!user || !ok) throw new UnauthorizedError("Wrong email or password", "invalid_credentials");

  await clearLoginAttempts(db, account);
  if (address) await refundLoginAttempt(db, address, ADDRESS_RULE);
  // Only after the password proved it is the owner: a disabled account says so instead of "wrong password".
  if (user.disabledAt !== null) throw new ForbiddenError("This account is disabled; ask an administrator", "account_disabled");
  // The hash the password was checked against: the session is made only while the account still has it (or its
  // stronger re-hash, below), so a password change or reset racing this sign-in wins and no session outlives it.
  let checked = user.passwordHash;
  if (needsRehash(user.passwordHash, input.pepper)) {
    const stronger = await hashPassword(input.password, input.pepper);
    const moved = await db
      .update(users)
      .set({ passwordHash: stronger })
      .where(and(eq(users.id, user.id), eq(users.passwordHash, user.passwordHash)))
      .returning({ id: users.id });
    if (moved.length === 1) checked = stronger;
    else {
      // Another sign-in of this password re-hashed it first (a double-submitted form, the CLI beside a browser):
      // the hash now stored still takes this password. A password change took it: refused below.
      const [stored] = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, user.id));
      if (stored && (await verifyPassword(input.password, stored.passwordHash, input.pepper))) checked = stored.passwordHash;
    }
  }
  if (input.previousToken) await deleteSession(db, input.previousToken);
  const session = await createSession(
    db,
    { userId: user.id, userAgent: input.userAgent, maxAgeMs: input.maxAgeMs, ifPasswordHash: checked, newDevice: !deviceId },
    now,
  );
  if (!session) throw new UnauthorizedError("Wrong email or password", "invalid_credentials");
  if (deviceId) await touchLoginDevice(db, user.id, deviceId, now);
  // The cookie to set: a new device's token, or the recognised one again (its lifetime starts over).
  const deviceToken = session.deviceToken ?? input.deviceToken ?? null;
  return { user: { id: user.id, email: user.email, role: user.role }, session, deviceToken };
}
