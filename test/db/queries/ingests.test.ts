import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import type { UserLimits } from "../../../db/limits";
import { abandonIngest, reserveIngest, startIngest } from "../../../db/queries/ingests";
import { getStorageBytes, getUserUsage } from "../../../db/queries/quotas";
import { createUser } from "../../../db/queries/users";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

const limits: UserLimits = { storageBytes: 10_000, activeJobs: 10, queuedVariations: 100, openUploads: 10, unusedUploads: 100 };

describe("the storage room form uploads in flight hold", () => {
  it("admits an upload's room only while it fits next to the others', and gives it back when the upload is abandoned", async () => {
    const { db } = await freshDb(server, "ingest_rooms");
    const userId = (await createUser(db, { email: `i-${newId()}@test.example`, password: "pw-for-ingests", role: "user" })).id;
    const [a, b, c] = [newId(), newId(), newId()];
    await startIngest(db, { id: a, userId, reservedBytes: 6000, limits }, 1);
    // 6000 + 5000 > 10 000: refused with the quota error, nothing recorded.
    await expect(startIngest(db, { id: b, userId, reservedBytes: 5000, limits }, 2)).rejects.toMatchObject({ code: "quota_exceeded" });
    await startIngest(db, { id: b, userId, reservedBytes: 0, limits }, 2);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(6000);

    // b grows: past the room a holds it is refused, up to it admitted; a's own room never counts against a.
    expect(await reserveIngest(db, { id: b, userId, reservedBytes: 4001, limits }, 3)).toBe("over");
    expect(await reserveIngest(db, { id: b, userId, reservedBytes: 4000, limits }, 3)).toBe("reserved");
    expect(await reserveIngest(db, { id: a, userId, reservedBytes: 6000, limits }, 3)).toBe("reserved");
    expect((await getUserUsage(db, userId)).storageBytes).toBe(10_000);
    // Held room is not stored bytes: the storage cap has nothing to free for it.
    expect(await getStorageBytes(db, userId)).toBe(0);

    expect(await abandonIngest(db, a)).toBe(true);
    expect(await reserveIngest(db, { id: a, userId, reservedBytes: 1, limits }, 4)).toBe("gone");
    await startIngest(db, { id: c, userId, reservedBytes: 6000, limits }, 4);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(10_000);
  });
});
