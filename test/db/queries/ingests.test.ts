import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { INGEST_HOLD_MS, RESERVE_STEP_BYTES, type UserLimits } from "../../../db/limits";
import { abandonIngest, releaseIdleIngestRooms, reserveIngest, startIngest, touchIngest } from "../../../db/queries/ingests";
import { getStorageBytes, getUserUsage } from "../../../db/queries/quotas";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();
const MiB = 1024 * 1024;

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

  it("gives back the room of an upload not touched for INGEST_HOLD_MS (its request died) beyond what it may have stored; touched again, it must ask for room through the quota check", async () => {
    const { db, userId } = await userOf("ingest_hold");
    const big: UserLimits = { ...limits, storageBytes: 100 * MiB };
    const now = Date.now();
    const [dead, live] = [newId(), newId()];
    await startIngest(db, { id: dead, userId, reservedBytes: 80 * MiB, limits: big }, now - INGEST_HOLD_MS - 60_000);
    await startIngest(db, { id: live, userId, reservedBytes: 10 * MiB, limits: big }, now);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(1);
    // It recorded nothing stored, and records at least every RESERVE_STEP_BYTES: it keeps that much.
    expect((await getUserUsage(db, userId)).storageBytes).toBe(10 * MiB + RESERVE_STEP_BYTES);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(0);
    // Another upload is let in on the room meanwhile…
    await startIngest(db, { id: newId(), userId, reservedBytes: 100 * MiB - 10 * MiB - RESERVE_STEP_BYTES, limits: big }, now);
    // …so the silent one, back, holds only what it kept and cannot take more.
    expect(await touchIngest(db, dead, RESERVE_STEP_BYTES, now)).toBe(RESERVE_STEP_BYTES);
    await expect(reserveIngest(db, { id: dead, userId, neededBytes: RESERVE_STEP_BYTES + 1, aheadBytes: 80 * MiB, limits: big }, now)).rejects.toMatchObject({ code: "quota_exceeded" });
    expect(await reserveIngest(db, { id: dead, userId, neededBytes: RESERVE_STEP_BYTES, aheadBytes: 80 * MiB, limits: big }, now)).toBe(RESERVE_STEP_BYTES);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(100 * MiB);
  });

  it("keeps counting what silent uploads stored, so many stalled uploads cannot store past the quota", async () => {
    const { db, userId } = await userOf("ingest_stall");
    const big: UserLimits = { ...limits, storageBytes: 100 * MiB };
    const now = Date.now();
    const then = now - INGEST_HOLD_MS - 60_000;
    // Three uploads, each stalled after storing just under a step, and one that stored 40 MiB of the 80 it declared.
    const small = [newId(), newId(), newId()];
    for (const id of small) await startIngest(db, { id, userId, reservedBytes: 15 * MiB, limits: big }, then);
    const large = newId();
    await startIngest(db, { id: large, userId, reservedBytes: 50 * MiB, limits: big }, then);
    expect(await touchIngest(db, large, 20 * MiB, then)).toBe(50 * MiB);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(1);
    // 3 × 15 MiB (each may have stored that much unrecorded) + 20 MiB recorded + one step past it.
    expect((await getUserUsage(db, userId)).storageBytes).toBe(45 * MiB + 20 * MiB + RESERVE_STEP_BYTES);
    await expect(startIngest(db, { id: newId(), userId, reservedBytes: 20 * MiB, limits: big }, now)).rejects.toMatchObject({ code: "quota_exceeded" });
  });

  it("makes a recorded size above an upload's room its room (the request died between recording and growing)", async () => {
    const { db, userId } = await userOf("ingest_record_above");
    const now = Date.now();
    const id = newId();
    await startIngest(db, { id, userId, reservedBytes: 1000, limits }, now - INGEST_HOLD_MS - 60_000);
    await touchIngest(db, id, 3000, now - INGEST_HOLD_MS - 60_000);
    expect(await releaseIdleIngestRooms(db, now - INGEST_HOLD_MS)).toBe(1);
    expect((await getUserUsage(db, userId)).storageBytes).toBe(3000);
  });
});
