import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { INGEST_HOLD_MS, type UserLimits } from "../../../db/limits";
import { abandonIngest, releaseIdleIngestRooms, reserveIngest, startIngest, touchIngest } from "../../../db/queries/ingests";
import { getStorageBytes, getUserUsage } from "../../../db/queries/quotas";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();

const limits: UserLimits = { storageBytes: 10_000, activeJobs: 10, queuedVariations: 100, openUploads: 10, unusedUploads: 100 };

async function userOf(name: string) {
  const { db } = await freshDb(server, name);
  const userId = (await createUser(db, { email: `i-${newId()}@test.example`, password: "pw-for-ingests", role: "user" })).id;
  return { db, userId };
}

describe("the storage room form uploads in flight hold", () => {
  it("admits an upload's room only while it fits next to the others', grows it up to what is left, and gives it back when the upload is abandoned", async () => {
    const { db, userId } = await userOf("ingest_rooms");
    const now = Date.now();
    const [a, b, c] = [newId(), newId(), newId()];
    await startIngest(db, { id: a, userId, reservedBytes: 6000, limits }, now);
    // 6000 + 5000 > 10 000: refused with the quota error, nothing recorded.
    await expect(startIngest(db, { id: b, userId, reservedBytes: 5000, limits }, now)).rejects.toMatchObject({ code: "quota_exceeded" });
    await startIngest(db, { id: b, userId, reservedBytes: 0, limits }, now);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(6000);

    // b needs 4001 where a holds 6000 of 10 000: refused. Asking 3000 with 9000 ahead gets all that is left.
    await expect(reserveIngest(db, { id: b, userId, neededBytes: 4001, aheadBytes: 9000, limits }, now)).rejects.toMatchObject({
      code: "quota_exceeded",
      message: expect.stringContaining("storage"),
    });
    expect(await reserveIngest(db, { id: b, userId, neededBytes: 3000, aheadBytes: 9000, limits }, now)).toBe(4000);
    // An upload's own room never counts against its own growth.
    expect(await reserveIngest(db, { id: a, userId, neededBytes: 6000, aheadBytes: 6000, limits }, now)).toBe(6000);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(10_000);
    // Held room is not stored bytes: the storage cap has nothing to free for it.
    expect(await getStorageBytes(db, userId)).toBe(0);

    expect(await abandonIngest(db, a)).toBe(true);
    expect(await reserveIngest(db, { id: a, userId, neededBytes: 1, aheadBytes: 1, limits }, now)).toBe("gone");
    await startIngest(db, { id: c, userId, reservedBytes: 6000, limits }, now);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(10_000);
  });

  it("gives back the room of an upload not touched for INGEST_HOLD_MS (its request died); touched again, it must ask for room through the quota check", async () => {
    const { db, userId } = await userOf("ingest_hold");
    const now = Date.now();
    const [dead, live] = [newId(), newId()];
    await startIngest(db, { id: dead, userId, reservedBytes: 8000, limits }, now - INGEST_HOLD_MS - 60_000);
    await startIngest(db, { id: live, userId, reservedBytes: 1000, limits }, now);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(1);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(1000);
    // Another upload is let in on the room meanwhile…
    const other = newId();
    await startIngest(db, { id: other, userId, reservedBytes: 8000, limits }, now);
    // …so the silent one, back, holds nothing and cannot take it again.
    expect(await touchIngest(db, dead, 0, now)).toBe(0);
    await expect(reserveIngest(db, { id: dead, userId, neededBytes: 2000, aheadBytes: 8000, limits }, now)).rejects.toMatchObject({ code: "quota_exceeded" });
    expect(await reserveIngest(db, { id: dead, userId, neededBytes: 500, aheadBytes: 8000, limits }, now)).toBe(1000);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(10_000);
  });

  it("keeps counting what a silent upload already stored, giving back only the room ahead of it: stalling cannot store past the quota", async () => {
    const { db, userId } = await userOf("ingest_stall");
    const now = Date.now();
    const silent = newId();
    const then = now - INGEST_HOLD_MS - 60_000;
    await startIngest(db, { id: silent, userId, reservedBytes: 8000, limits }, then);
    expect(await touchIngest(db, silent, 5000, then)).toBe(8000);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(1);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(5000);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(0);
    // Its 5000 bytes are still in the bucket: another upload gets only the rest.
    await expect(startIngest(db, { id: newId(), userId, reservedBytes: 6000, limits }, now)).rejects.toMatchObject({ code: "quota_exceeded" });
    await startIngest(db, { id: newId(), userId, reservedBytes: 5000, limits }, now);
    // Back, it holds what it stored and asks for more through the quota check.
    expect(await touchIngest(db, silent, 5000, now)).toBe(5000);
    await expect(reserveIngest(db, { id: silent, userId, neededBytes: 5001, aheadBytes: 8000, limits }, now)).rejects.toMatchObject({ code: "quota_exceeded" });
  });
});
