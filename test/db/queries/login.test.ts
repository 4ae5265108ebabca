import type { InStatement } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { newId } from "../../../db/ids";
import { changePassword } from "../../../db/queries/change-password";
import { login } from "../../../db/queries/login";
import { authenticateSession } from "../../../db/queries/sessions";
import { createUser } from "../../../db/queries/users";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

/** Runs `meanwhile` right before the first batch of `db` that inserts a session is sent, then sends it. */
function beforeSessionInsert(db: Db, meanwhile: () => Promise<unknown>): () => void {
  const client = db.$client;
  const batch = client.batch.bind(client);
  let done = false;
  client.batch = (async (stmts: InStatement[], mode?: never) => {
    const sqlOf = (s: InStatement) => (typeof s === "string" ? s : s.sql);
    if (!done && stmts.some((s) => /insert into "?sessions"?/i.test(sqlOf(s)))) {
      done = true;
      await meanwhile();
    }
    return batch(stmts, mode);
  }) as typeof client.batch;
  return () => void Object.assign(client, { batch });
}

describe("login", () => {
  it("gets no session when the password changes between its password check and its session (the change ends every session, this one too)", async () => {
    const { db } = await freshDb(server, "login_vs_change");
    const email = `l-${newId()}@test.example`;
    const user = await createUser(db, { email, password: "old-password-1", role: "user" });
    const restore = beforeSessionInsert(db, () =>
      changePassword(db, { userId: user.id, currentPassword: "old-password-1", newPassword: "new-password-2" }, Date.now()),
    );
    try {
      await expect(login(db, { email, password: "old-password-1", address: null }, Date.now())).rejects.toMatchObject({ code: "invalid_credentials" });
    } finally {
      restore();
    }
    const fresh = await login(db, { email, password: "new-password-2", address: null }, Date.now());
    expect(await authenticateSession(db, fresh.session.token, Date.now())).not.toBeNull();
    const rows = await db.$client.execute({ sql: "SELECT count(*) AS n FROM sessions WHERE user_id = ?", args: [user.id] });
    expect(Number(rows.rows[0]!.n)).toBe(1);
  });
});
