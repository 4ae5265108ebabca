import { eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb, type Db } from "../../../../db/client";
import { newId } from "../../../../db/ids";
import { createJobFromUploads } from "../../../../db/queries/jobs";
import { USER_LIMIT_DEFAULTS, userLimitsFrom } from "../../../../db/limits";
import { jobs, uploads, users } from "../../../../db/schema";
import { startDbProxy } from "../../../helpers/db-proxy";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb } from "../../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const limits = userLimitsFrom(USER_LIMIT_DEFAULTS);

async function userWithUploads(db: Db, n: number, status: "completed" | "uploading" = "completed") {
  const userId = newId();
  await db.insert(users).values({ id: userId, email: `${userId}@test.local`, passwordHash: "x", createdAt: NOW });
  const ids = Array.from({ length: n }, () => newId());
  await db.insert(uploads).values(
    ids.map((id) => ({
      id,
      userId,
      filename: `${id}.mp4`,
      size: 1000,
      partSize: 1000,
      partCount: 1,
      objectKey: `uploads/${id}`,
      r2UploadId: `r2-${id}`,
      status,
      createdAt: NOW,
      completedAt: status === "completed" ? NOW : null,
    })),
  );
  return { userId, ids };
}

const input = (userId: string, uploadIds: string[]) => ({ id: newId(), userId, variationsPerVideo: 2, retentionMs: 3600_000, uploadIds, limits });

describe("creating a job from completed uploads", () => {
  it("holds no write lock while its request waits: another user's write goes through meanwhile", async () => {
    const { db, url } = await freshDb(server, "create-lock");
    const a = await userWithUploads(db, 2);
    const b = await userWithUploads(db, 1);
    // Every write of A's create waits at the proxy until B's write is done. An interactive transaction took the
    // write lock in its first round trip, so B's write could not finish while A's next one was held.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const proxy = await startDbProxy(url, (body) => (/insert into \\?"jobs\\?"/i.test(body) ? { hold: gate } : "pass"));
    try {
      const creating = createJobFromUploads(createDb(proxy.url), input(a.userId, a.ids), NOW);
      await expect.poll(() => proxy.held.length, { timeout: 10_000 }).toBe(1);
      const other = createDb(url, { timeoutMs: 4_000 });
      await other.update(uploads).set({ filename: "renamed.mp4" }).where(eq(uploads.id, b.ids[0]!));
      release();
      const job = await creating;
      expect(job.totalVariations).toBe(4);
      const consumed = await db.select({ status: uploads.status }).from(uploads).where(inArray(uploads.id, a.ids));
      expect(consumed).toEqual([{ status: "consumed" }, { status: "consumed" }]);
    } finally {
      release();
      await proxy.close();
    }
  });

  it("creates nothing when an upload is used by another job between its read and its write, and names that job", async () => {
    const { db, url } = await freshDb(server, "create-twin");
    const a = await userWithUploads(db, 2);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The first create's batch waits; a second create of the same uploads runs to the end meanwhile.
    let first = true;
    const proxy = await startDbProxy(url, (body) => {
      if (!/insert into \\?"jobs\\?"/i.test(body) || !first) return "pass";
      first = false;
      return { hold: gate };
    });
    try {
      const slow = createJobFromUploads(createDb(proxy.url), input(a.userId, a.ids), NOW).catch((e: unknown) => e);
      await expect.poll(() => proxy.held.length, { timeout: 10_000 }).toBe(1);
      const fast = await createJobFromUploads(createDb(url), input(a.userId, a.ids), NOW);
      release();
      const err = (await slow) as { code?: string; extra?: unknown };
      expect(err).toMatchObject({ code: "upload_used" });
      expect(JSON.stringify(err.extra)).toContain(fast.id);
      expect(await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.userId, a.userId))).toEqual([{ id: fast.id }]);
    } finally {
      release();
      await proxy.close();
    }
  });

  it("refuses an upload still being sent with upload_incomplete and creates nothing", async () => {
    const { db } = await freshDb(server, "create-incomplete");
    const a = await userWithUploads(db, 1, "uploading");
    await expect(createJobFromUploads(db, input(a.userId, a.ids), NOW)).rejects.toMatchObject({ code: "upload_incomplete" });
    expect(await db.select().from(jobs).where(eq(jobs.userId, a.userId))).toEqual([]);
  });
});
