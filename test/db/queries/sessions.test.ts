import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { authenticateSession, createSession, SESSIONS_PER_USER } from "../../../db/queries/sessions";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();

describe("sessions", () => {
  it(`keeps at most ${SESSIONS_PER_USER} sessions per account: a sign-in past that ends the least recently used one`, async () => {
    const { db } = await freshDb(server, "session_limit");
    const userId = (await createUser(db, { email: `s-${newId()}@test.example`, password: "pw-for-sessions", role: "user" })).id;
    const start = Date.now();
    const tokens: string[] = [];
    for (let i = 0; i <= SESSIONS_PER_USER; i++) tokens.push((await createSession(db, { userId }, start + i)).token);
    const live = async (token: string) => (await authenticateSession(db, token, start + SESSIONS_PER_USER + 1)) !== null;
    expect(await live(tokens[0]!)).toBe(false);
    for (const t of tokens.slice(1)) expect(await live(t)).toBe(true);
  });

  it("ends never-used sessions before one in use when sign-ins pile up (a script signing in without keeping its cookie)", async () => {
    const { db } = await freshDb(server, "session_in_use");
    const userId = (await createUser(db, { email: `s-${newId()}@test.example`, password: "pw-for-sessions", role: "user" })).id;
    const start = Date.now();
    const mine = (await createSession(db, { userId }, start)).token;
    // The owner's browser uses its session once; its last use is not written again for an hour.
    expect(await authenticateSession(db, mine, start + 1000)).not.toBeNull();
    for (let i = 0; i < SESSIONS_PER_USER * 2; i++) await createSession(db, { userId }, start + 2000 + i);
    expect(await authenticateSession(db, mine, start + 10_000)).not.toBeNull();
  });
});
