import type { Db } from "../client";
import { UnauthorizedError } from "../errors";
import { hashPassword, verifyPassword } from "../passwords";
import {
  ACCOUNT_RULE,
  accountKey,
  ADDRESS_RULE,
  addressKey,
  clearLoginAttempts,
  refundLoginAttempt,
  reserveLoginAttempt,
} from "./login-attempts";
import { createSession, type AuthenticatedUser, type NewSession } from "./sessions";
import { findUserByEmail, normalizeEmail } from "./users";

let dummyHash: Promise<string> | undefined;

/**
 * Checks credentials and opens a session. The attempt is reserved before the (costly) password check — per
 * client address when one is known, then per account — so a burst of guesses is refused with 429 instead of
 * being evaluated. An unknown email still pays for one PBKDF2 verification so response time does not reveal
 * which accounts exist.
 */
export async function login(
  db: Db,
  input: { email: string; password: string; address: string | null },
  now: number,
): Promise<{ user: AuthenticatedUser; session: NewSession }> {
  const email = normalizeEmail(input.email);
  const account = accountKey(email);
  const address = input.address ? addressKey(input.address) : null;
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
  const ok = await verifyPassword(input.password, user?.passwordHash ?? (await dummyHash));
  if (!user || !ok) throw new UnauthorizedError("Wrong email or password", "invalid_credentials");

  await clearLoginAttempts(db, account);
  if (address) await refundLoginAttempt(db, address, ADDRESS_RULE);
  const session = await createSession(db, user.id, now);
  return { user: { id: user.id, email: user.email, role: user.role }, session };
}
