import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import {
  ACCOUNT_RULE,
  accountKey,
  ADDRESS_RULE,
  LOGIN_QUIET_RESET_MS,
  pruneLoginAttempts,
  reserveLoginAttempt,
} from "../../db/queries/login-attempts";
import { loginFailures } from "../../db/schema";
import { call, db, isolatedDb, loginCookie, makeUser } from "./helpers";

const octet = () => Math.floor(Math.random() * 250) + 1;
const hex = () => Math.floor(Math.random() * 0xffff).toString(16);

function attempt(email: string, password: string, headers: Record<string, string> = {}) {
  // A cookie header goes in as a header: call() would also add an Origin for cookie-authenticated calls.
  return call("/api/auth/login", { method: "POST", json: { email, password }, headers });
}

/** Stands in for waiting out the lock: the account's lock ends now. */
async function letLockLapse(email: string) {
  await db.update(loginFailures).set({ lockedUntil: Date.now() - 1 }).where(eq(loginFailures.key, accountKey(email)));
}

describe("login throttle", () => {
  it("evaluates at most 5 of 40 parallel wrong logins for one account and refuses the rest with 429", async () => {
    const user = await makeUser();
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => attempt(user.email, `wrong-${i}`)));
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(ACCOUNT_RULE.free);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(40 - ACCOUNT_RULE.free);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    const refused = replies.find((r) => r.status === 429)!;
    expect(await refused.json()).toMatchObject({ error: { code: "too_many_attempts" } });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("does not let rotating client addresses or X-Real-IP / X-Forwarded-For headers escape the per-account limit", async () => {
    const user = await makeUser();
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await attempt(user.email, `wrong-${i}`, {
        "cf-connecting-ip": `198.51.100.${i + 1}`,
        "x-real-ip": `203.0.113.${octet()}`,
        "x-forwarded-for": `203.0.113.${octet()}, 10.0.0.${octet()}`,
      });
      statuses.push(res.status);
    }
    expect(statuses.slice(0, ACCOUNT_RULE.free)).toEqual(Array(ACCOUNT_RULE.free).fill(401));
    expect(statuses.slice(ACCOUNT_RULE.free)).toEqual(Array(12 - ACCOUNT_RULE.free).fill(429));
  });

  it("keys the per-address limit on CF-Connecting-IP, ignoring client-set X-Real-IP without a trusted proxy", async () => {
    const from = `100.64.${octet()}.${octet()}`;
    for (let i = 0; i < ADDRESS_RULE.free; i++) {
      const res = await attempt(`nobody-${newId()}@test.example`, "wrong", { "cf-connecting-ip": from, "x-real-ip": `203.0.113.${i}` });
      expect(res.status).toBe(401);
    }
    const blocked = await attempt(`nobody-${newId()}@test.example`, "wrong", { "cf-connecting-ip": from, "x-real-ip": "203.0.113.250" });
    expect(blocked.status).toBe(429);
  });

  it("groups IPv6 addresses by /64 for the per-address limit, across accounts", async () => {
    const prefix = `2001:db8:${hex()}:${hex()}`;
    for (let i = 0; i < ADDRESS_RULE.free; i++) {
      const res = await attempt(`nobody-${newId()}@test.example`, "wrong", { "cf-connecting-ip": `${prefix}::${(i + 1).toString(16)}` });
      expect(res.status).toBe(401);
    }
    const sameSlash64 = await attempt(`nobody-${newId()}@test.example`, "wrong", { "cf-connecting-ip": `${prefix}:ffff:ffff:ffff:ffff` });
    expect(sameSlash64.status).toBe(429);
    const user = await makeUser();
    const otherSlash64 = await attempt(user.email, user.password, { "cf-connecting-ip": `2001:db8:${hex()}:${hex()}::1` });
    expect(otherSlash64.status).toBe(200);
  });

  it("lets the right password in once the lockout delay has passed, and that success resets the account's counter", async () => {
    const user = await makeUser();
    for (let i = 0; i < ACCOUNT_RULE.free; i++) expect((await attempt(user.email, `wrong-${i}`)).status).toBe(401);
    expect((await attempt(user.email, user.password)).status).toBe(429);
    await letLockLapse(user.email);
    expect((await attempt(user.email, user.password)).status).toBe(200);
    // Counter reset: the free attempts are available again.
    for (let i = 0; i < ACCOUNT_RULE.free - 1; i++) expect((await attempt(user.email, `wrong-${i}`)).status).toBe(401);
    expect((await attempt(user.email, user.password)).status).toBe(200);
  });

  it("lets a browser that signed in before sign in while guesses from elsewhere keep the account locked", async () => {
    const user = await makeUser();
    const first = await attempt(user.email, user.password, { "cf-connecting-ip": `192.0.2.${octet()}` });
    expect(first.status).toBe(200);
    const device = /vr_device=([^;]+)/.exec(first.headers.get("set-cookie") ?? "")?.[1];
    expect(device).toBeTruthy();
    // Someone else guesses from address after address, and once more each time the lock lapses.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < ACCOUNT_RULE.free; i++) await attempt(user.email, `guess-${round}-${i}`, { "cf-connecting-ip": `198.51.100.${octet()}` });
      await letLockLapse(user.email);
    }
    await attempt(user.email, "one-more-guess", { "cf-connecting-ip": `198.51.100.${octet()}` });
    // A browser without the cookie, even with the right password, waits for the lock …
    expect((await attempt(user.email, user.password, { "cf-connecting-ip": `203.0.113.${octet()}` })).status).toBe(429);
    // … the owner's browser does not.
    const owner = await attempt(user.email, user.password, { "cf-connecting-ip": `203.0.113.${octet()}`, cookie: `vr_device=${device}` });
    expect(owner.status).toBe(200);
    // The account's lock is the guesser's: the owner's success does not lift it for everyone.
    expect((await attempt(user.email, user.password, { "cf-connecting-ip": `203.0.113.${octet()}` })).status).toBe(429);
  });

  it("lets a browser that signed in before sign in from an address that someone else's guesses have locked", async () => {
    const user = await makeUser();
    const shared = `100.64.${octet()}.${octet()}`;
    const first = await attempt(user.email, user.password, { "cf-connecting-ip": shared });
    expect(first.status).toBe(200);
    const device = /vr_device=([^;]+)/.exec(first.headers.get("set-cookie") ?? "")![1];
    // Another person behind the same NAT guesses at made-up accounts until the address is locked.
    for (let i = 0; i < ADDRESS_RULE.free; i++) await attempt(`nobody-${newId()}@test.example`, "wrong", { "cf-connecting-ip": shared });
    expect((await attempt(user.email, user.password, { "cf-connecting-ip": shared })).status).toBe(429);
    // The owner's browser still gets in from there …
    expect((await attempt(user.email, user.password, { "cf-connecting-ip": shared, cookie: `vr_device=${device}` })).status).toBe(200);
    // … without lifting the address's lock for anyone else.
    expect((await attempt(`nobody-${newId()}@test.example`, "wrong", { "cf-connecting-ip": shared })).status).toBe(429);
  });

  it("counts a remembered browser's own wrong passwords on its own counter, and its cookie speaks for no other account", async () => {
    const [user, other] = [await makeUser(), await makeUser()];
    const res = await attempt(user.email, user.password);
    const cookie = `vr_device=${/vr_device=([^;]+)/.exec(res.headers.get("set-cookie") ?? "")![1]}`;
    for (let i = 0; i < ACCOUNT_RULE.free; i++) expect((await attempt(user.email, `wrong-${i}`, { cookie })).status).toBe(401);
    expect((await attempt(user.email, user.password, { cookie })).status).toBe(429);
    // The account-wide counter saw none of it: another browser still gets in (and is remembered in turn).
    const second = await attempt(user.email, user.password);
    expect(second.status).toBe(200);
    const fresh = `vr_device=${/vr_device=([^;]+)/.exec(second.headers.get("set-cookie") ?? "")![1]}`;
    // Presented for another account, a (fresh, unlocked) cookie changes nothing: that account's own lock applies.
    for (let i = 0; i < ACCOUNT_RULE.free; i++) await attempt(other.email, `wrong-${i}`);
    expect((await attempt(other.email, other.password, { cookie: fresh })).status).toBe(429);
    // It still works for its own account, and the answer renews it.
    const again = await attempt(user.email, user.password, { cookie: fresh });
    expect(again.status).toBe(200);
    expect(again.headers.get("set-cookie")).toContain(fresh);
  });

  it("forgets the account's remembered browsers when its password changes", async () => {
    const user = await makeUser();
    const first = await attempt(user.email, user.password);
    const cookie = `vr_device=${/vr_device=([^;]+)/.exec(first.headers.get("set-cookie") ?? "")![1]}`;
    const session = first.headers.get("set-cookie")!.split(";")[0]!;
    const newPassword = "a brand new passphrase";
    const changed = await call("/api/me/password", { method: "POST", cookie: session, json: { currentPassword: user.password, newPassword } });
    expect(changed.status).toBeLessThan(300);
    for (let i = 0; i < ACCOUNT_RULE.free; i++) await attempt(user.email, `guess-${i}`, { "cf-connecting-ip": `198.51.100.${octet()}` });
    expect((await attempt(user.email, newPassword, { cookie })).status).toBe(429);
  });

  it("keeps the browser that changed the password remembered (or remembers it), so guesses from elsewhere do not lock its owner out", async () => {
    for (const hadDevice of [true, false]) {
      const user = await makeUser();
      const first = await attempt(user.email, user.password);
      const set = first.headers.get("set-cookie") ?? "";
      const device = `vr_device=${/vr_device=([^;]+)/.exec(set)![1]}`;
      const session = set.split(";")[0]!;
      const newPassword = "a brand new passphrase";
      const changed = await call("/api/me/password", {
        method: "POST",
        cookie: hadDevice ? `${session}; ${device}` : session,
        json: { currentPassword: user.password, newPassword },
      });
      expect(changed.status).toBe(204);
      // Without a device cookie the change hands out a new one; with one, that one stays.
      const given = /vr_device=([^;]+)/.exec(changed.headers.get("set-cookie") ?? "")?.[1];
      expect(given === undefined).toBe(hadDevice);
      const mine = hadDevice ? device : `vr_device=${given}`;
      for (let i = 0; i < ACCOUNT_RULE.free + 1; i++) await attempt(user.email, `guess-${i}`, { "cf-connecting-ip": `198.51.100.${octet()}` });
      expect((await attempt(user.email, newPassword)).status).toBe(429);
      expect((await attempt(user.email, newPassword, { cookie: mine })).status).toBe(200);
    }
  });

  it("lets a signed-in owner change the password while guesses at the account's login keep it locked", async () => {
    const user = await makeUser();
    const session = await loginCookie(user);
    for (let i = 0; i < ACCOUNT_RULE.free + 1; i++) await attempt(user.email, `guess-${i}`, { "cf-connecting-ip": `198.51.100.${octet()}` });
    const res = await call("/api/me/password", { method: "POST", cookie: session, json: { currentPassword: user.password, newPassword: "an entirely new passphrase" } });
    expect(res.status).toBeLessThan(300);
  });

  it("without a known client address, locks only the guessed account, never a shared key", async () => {
    const victim = await makeUser();
    const bystander = await makeUser();
    for (let i = 0; i < ACCOUNT_RULE.free + 3; i++) await attempt(victim.email, `wrong-${i}`);
    expect((await attempt(victim.email, victim.password)).status).toBe(429);
    expect((await attempt(bystander.email, bystander.password)).status).toBe(200);
  });

  it("grows the delay after each attempt past the free ones, capped so the lock always lapses", async () => {
    const key = `account:delay-${newId()}@test.example`;
    // Real time, not a fixed epoch: the cron's prune (other test files, same database) must not see this row as stale.
    let now = Date.now();
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      await reserveLoginAttempt(db, key, ACCOUNT_RULE, now);
      const [row] = await db.select().from(loginFailures).where(eq(loginFailures.key, key));
      delays.push(row!.lockedUntil === 0 ? 0 : row!.lockedUntil - now);
      // A second try while locked is refused and changes nothing.
      if (row!.lockedUntil > now) await expect(reserveLoginAttempt(db, key, ACCOUNT_RULE, now + 1)).rejects.toMatchObject({ status: 429 });
      now = Math.max(now, row!.lockedUntil);
    }
    const base = ACCOUNT_RULE.baseDelayMs;
    expect(delays).toEqual([0, 0, 0, 0, base, base * 2, base * 4, base * 8, base * 16, ACCOUNT_RULE.maxDelayMs, ACCOUNT_RULE.maxDelayMs, ACCOUNT_RULE.maxDelayMs]);
    // A quiet hour starts the count over.
    await reserveLoginAttempt(db, key, ACCOUNT_RULE, now + LOGIN_QUIET_RESET_MS + 1);
    const [row] = await db.select().from(loginFailures).where(eq(loginFailures.key, key));
    expect(row).toMatchObject({ attempts: 1, lockedUntil: 0 });
  });

  it("prunes counters quiet for an hour, but never one whose lock is still running", async () => {
    const own = await isolatedDb();
    const now = Date.now();
    await own.insert(loginFailures).values([
      { key: "account:quiet@test.example", attempts: 3, lockedUntil: 0, updatedAt: now - LOGIN_QUIET_RESET_MS - 1 },
      { key: "account:locked@test.example", attempts: 20, lockedUntil: now + 60_000, updatedAt: now - LOGIN_QUIET_RESET_MS - 1 },
      { key: "account:recent@test.example", attempts: 1, lockedUntil: 0, updatedAt: now - 1000 },
    ]);
    expect(await pruneLoginAttempts(own, now)).toBe(1);
    const left = await own.select({ key: loginFailures.key }).from(loginFailures);
    expect(left.map((r) => r.key).sort()).toEqual(["account:locked@test.example", "account:recent@test.example"]);
  });
});
