import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { UserLimits } from "../../../db/limits";
import { uploads } from "../../../db/schema";
import { startUpload } from "../../../edge/lib/uploads";
import { db, makeUser, onDatabaseRequest } from "../helpers";

const MiB = 1024 * 1024;
const ONE_OPEN: UserLimits = { storageBytes: 1e12, activeJobs: 1000, queuedVariations: 1e6, openUploads: 1, unusedUploads: 1000 };

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("startUpload with an Idempotency-Key", () => {
  it("answers the twin's upload when the twin filled the open-uploads limit between this request's look and its quota check", async () => {
    const user = await makeUser();
    const key = crypto.randomUUID();
    const input = { user, filename: "big.mp4", size: 3 * MiB, maxBytes: 1e9, limits: ONE_OPEN, idempotencyKey: key };
    let twin: Promise<{ id: string }> | null = null;
    // This request's usage read waits for a twin with the same key to open its upload first.
    onDatabaseRequest(async (body) => {
      if (twin === null && body.includes("qb.stored_bytes")) {
        twin = startUpload({ db, bucket: env.BUCKET }, input, Date.now());
        await twin;
      }
      return "send";
    });
    const answer = await startUpload({ db, bucket: env.BUCKET }, input, Date.now());
    vi.unstubAllGlobals();
    expect(twin).not.toBeNull();
    expect(answer).toMatchObject({ id: (await twin!).id, replayed: true });
    expect((await db.select().from(uploads).where(eq(uploads.userId, user.id))).map((u) => u.id)).toEqual([answer.id]);
  });

  it("keeps the R2 upload when the insert's reply and the look-up after it are both lost, so a retry can use it", async () => {
    const user = await makeUser();
    const key = crypto.randomUUID();
    const input = { user, filename: "big.mp4", size: 3 * MiB, maxBytes: 1e9, limits: { ...ONE_OPEN, openUploads: 10 }, idempotencyKey: key };
    let step = 0;
    onDatabaseRequest(async (body) => {
      if (step === 0 && body.includes('insert into \\"uploads\\"')) return step++, "lose-reply";
      // Both tries of the look-up (a read is sent once more after a lost connection).
      if ((step === 1 || step === 2) && body.includes('from \\"uploads\\"')) return step++, "fail";
      return "send";
    });
    await expect(startUpload({ db, bucket: env.BUCKET }, input, Date.now())).rejects.toThrow();
    vi.unstubAllGlobals();
    expect(step).toBe(3);
    // The retry gets the upload the first request recorded, and its R2 multipart upload still takes parts.
    const retry = await startUpload({ db, bucket: env.BUCKET }, input, Date.now());
    expect(retry.replayed).toBe(true);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, retry.id));
    const part = await env.BUCKET.resumeMultipartUpload(row!.objectKey, row!.r2UploadId).uploadPart(1, new Uint8Array(3 * MiB));
    expect(part.etag).toBeTruthy();
  });
});
