import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { resetPassword } from "../../../db/queries/reset-password";
import { sessions, users } from "../../../db/schema";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;

describe("resetPassword by an admin", () => {
  it("does nothing for an admin disabled a moment ago (403): the user keeps their password and sessions", async () => {
    const { db } = await freshDb(server, "reset_actor");
    const admin = newId();
    const user = newId();
    await db.insert(users).values([
      { id: admin, email: `${admin}@test.local`, passwordHash: "x", role: "admin", createdAt: NOW, disabledAt: NOW },
      { id: user, email: `${user}@test.local`, passwordHash: "old-hash", role: "user", createdAt: NOW },
    ]);
    await db.insert(sessions).values({ id: newId(), tokenHash: newId(), userId: user, createdAt: NOW, lastSeenAt: NOW, expiresAt: NOW + 3600_000 });
    await expect(resetPassword(db, { actorId: admin, userId: user, password: "a brand new passphrase" })).rejects.toMatchObject({ status: 403 });
    const [row] = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, user));
    expect(row!.passwordHash).toBe("old-hash");
    expect(await db.select().from(sessions).where(eq(sessions.userId, user))).toHaveLength(1);
  });
});
