import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { changePassword } from "../../../db/queries/change-password";
import { login } from "../../../db/queries/login";
import { authenticateSession } from "../../../db/queries/sessions";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();
const NOW = Date.now();

async function userWithSession(name: string) {
  const { db } = await freshDb(server, name);
  const email = `cp-${newId()}@test.example`;
  const user = await createUser(db, { email, password: "old-password-1", role: "user" });
  const { session } = await login(db, { email, password: "old-password-1", address: null }, Date.now());
  return { db, email, user, session };
}

describe("changePassword", () => {
  it("answers a retry of a change whose reply was lost as done, instead of calling the old password wrong", async () => {
    const { db, email, user, session } = await userWithSession("change_pw_retry");
    const change = { userId: user.id, currentPassword: "old-password-1", newPassword: "new-password-2", keepToken: session.token };
    await changePassword(db, change, Date.now());
    // The reply was lost after the commit; the browser (or CLI) sends the same request again.
    await expect(changePassword(db, change, Date.now())).resolves.toEqual({ deviceToken: null });
    expect(await authenticateSession(db, session.token, Date.now())).not.toBeNull();
    await expect(login(db, { email, password: "new-password-2", address: null }, Date.now())).resolves.toBeTruthy();
    await expect(login(db, { email, password: "old-password-1", address: null }, Date.now())).rejects.toMatchObject({ code: "invalid_credentials" });
  });

  it("answers both of two identical changes sent at once (a double submit) as done", async () => {
    const { db, user, session } = await userWithSession("change_pw_double");
    const change = { userId: user.id, currentPassword: "old-password-1", newPassword: "new-password-2", keepToken: session.token };
    const results = await Promise.allSettled([changePassword(db, change, Date.now()), changePassword(db, change, Date.now())]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled"]);
    expect(await authenticateSession(db, session.token, Date.now())).not.toBeNull();
  });

  it("counts the check of the new password as a guess of its own: a stolen session tests one password per throttled attempt", async () => {
    const { db, user, session } = await userWithSession("change_pw_guesses");
    const guess = (n: number) => changePassword(db, { userId: user.id, currentPassword: `guess-a-${n}-xx`, newPassword: `guess-b-${n}-xx`, keepToken: session.token }, NOW);
    // ACCOUNT_RULE lets 5 guesses through before its lock: two requests of two guesses each, then the fifth guess locks.
    await expect(guess(1)).rejects.toMatchObject({ code: "wrong_password" });
    await expect(guess(2)).rejects.toMatchObject({ code: "wrong_password" });
    await expect(guess(3)).rejects.toMatchObject({ code: "too_many_attempts" });
  });

  it("still refuses a wrong current password when the new one is not the password either", async () => {
    const { db, user, session } = await userWithSession("change_pw_wrong");
    await expect(
      changePassword(db, { userId: user.id, currentPassword: "not-the-password", newPassword: "new-password-2", keepToken: session.token }, Date.now()),
    ).rejects.toMatchObject({ code: "wrong_password" });
  });
});
