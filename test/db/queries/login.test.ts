import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { newId } from "../../../db/ids";
import { changePassword } from "../../../db/queries/change-password";
import { login } from "../../../db/queries/login";
import { resetPassword } from "../../../db/queries/reset-password";
import { authenticateSession } from "../../../db/queries/sessions";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";
import { interceptStatements, sqlOf } from "../../helpers/statements";

const server = useTestLibsql();

/** Runs `meanwhile` right before the first statement `db` sends whose SQL matches `re`, then sends it. */
function before(db: Db, re: RegExp, meanwhile: () => Promise<unknown>): () => void {
  let done = false;
  return interceptStatements(db, async (stmts) => {
    if (!done && stmts.some((s) => re.test(sqlOf(s)))) {
      done = true;
      await meanwhile();
    }
  });
}

/**
 * A user signing in with "old-password-1" while a change to "new-password-2" lands right before the sign-in's
 * statement matching `re`: the sign-in is refused as invalid_credentials. The database and the user.
 */
async function signInOvertakenByChange(name: string, re: RegExp) {
  const { db } = await freshDb(server, name);
  const email = `l-${newId()}@test.example`;
  const user = await createUser(db, { email, password: "old-password-1", role: "user" });
  const restore = before(db, re, () =>
    changePassword(db, { userId: user.id, currentPassword: "old-password-1", newPassword: "new-password-2" }, Date.now()),
  );
  try {
    await expect(login(db, { email, password: "old-password-1", address: null }, Date.now())).rejects.toMatchObject({ code: "invalid_credentials" });
  } finally {
    restore();
  }
  return { db, email, user };
}

describe("login", () => {
  it("gets no session when the password changes between its password check and its session (the change ends every session, this one too)", async () => {
    const { db, email, user } = await signInOvertakenByChange("login_vs_change", /insert into "?sessions"?/i);
    const fresh = await login(db, { email, password: "new-password-2", address: null }, Date.now());
    expect(await authenticateSession(db, fresh.session.token, Date.now())).not.toBeNull();
    const rows = await db.$client.execute({ sql: "SELECT count(*) AS n FROM sessions WHERE user_id = ?", args: [user.id] });
    expect(Number(rows.rows[0]!.n)).toBe(1);
  });

  it("remembers no browser for a sign-in with the old password that a password change overtook (the browser goes with the session, or not at all)", async () => {
    const { db, email, user } = await signInOvertakenByChange("login_device_vs_change", /insert into "?login_devices"?/i);
    const rows = await db.$client.execute({ sql: "SELECT (SELECT count(*) FROM login_devices WHERE user_id = ?) AS devices, (SELECT count(*) FROM sessions WHERE user_id = ?) AS sessions", args: [user.id, user.id] });
    expect({ devices: Number(rows.rows[0]!.devices), sessions: Number(rows.rows[0]!.sessions) }).toEqual({ devices: 0, sessions: 0 });
    // The owner's own sign-in with the new password is remembered as before.
    expect((await login(db, { email, password: "new-password-2", address: null }, Date.now())).deviceToken).toMatch(/^vrd_/);
  });

  it("remembers no browser for a password change that a reset overtook right after it", async () => {
    const { db } = await freshDb(server, "change_device_vs_reset");
    const email = `l-${newId()}@test.example`;
    const user = await createUser(db, { email, password: "old-password-1", role: "user" });
    const { session } = await login(db, { email, password: "old-password-1", address: null }, Date.now());
    const restore = before(db, /insert into "?login_devices"?/i, () => resetPassword(db, { email, password: "reset-password-3" }));
    let changed: Awaited<ReturnType<typeof changePassword>>;
    try {
      changed = await changePassword(db, { userId: user.id, currentPassword: "old-password-1", newPassword: "new-password-2", keepToken: session.token }, Date.now());
    } finally {
      restore();
    }
    expect(changed.deviceToken).toBeNull();
    const rows = await db.$client.execute({ sql: "SELECT count(*) AS n FROM login_devices WHERE user_id = ?", args: [user.id] });
    expect(Number(rows.rows[0]!.n)).toBe(0);
  });

  it("signs in both of two sign-ins that race to re-hash the same password (the later one finds the stronger hash still takes it)", async () => {
    const { db } = await freshDb(server, "login_rehash_race");
    const email = `l-${newId()}@test.example`;
    // Hashed without the pepper the sign-ins use: the first of them to succeed re-hashes it.
    const user = await createUser(db, { email, password: "the-password-1", role: "user" });
    const pepper = "pepper-for-the-test";
    let second: Awaited<ReturnType<typeof login>> | undefined;
    const restore = before(db, /^\s*update "users" set "password_hash"/i, async () => {
      second = await login(db, { email, password: "the-password-1", address: null, pepper }, Date.now());
    });
    let first: Awaited<ReturnType<typeof login>>;
    try {
      first = await login(db, { email, password: "the-password-1", address: null, pepper }, Date.now());
    } finally {
      restore();
    }
    for (const signedIn of [first, second!]) expect(await authenticateSession(db, signedIn.session.token, Date.now())).toMatchObject({ user: { id: user.id } });
  });
});
