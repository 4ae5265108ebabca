import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import type { UserLimits } from "../../../db/limits";
import { createJob, createJobFromUploads, readQueueSnapshot } from "../../../db/queries/jobs";
import { ingests, jobs, uploads } from "../../../db/schema";
import { createJobOnce, createOnce } from "../../../edge/lib/idempotency";
import { createWebhook, findWebhookByIdempotencyKey } from "../../../db/queries/webhooks";
import { createJobFromForm } from "../../../edge/lib/ingest";
import { sharedQueueSnapshots } from "../../../edge/lib/queue-snapshot";
import { db, fakeMp4, formBody, makeUser } from "../helpers";

const DAY = 24 * 60 * 60 * 1000;
const ROOMY: UserLimits = { storageBytes: 1e12, activeJobs: 1000, queuedVariations: 1e6, openUploads: 1000, unusedUploads: 1000 };

function formRequest(): Request {
  const { body, contentType } = formBody([
    { name: "variations", value: "1" },
    { name: "videos", filename: "a.mp4", bytes: fakeMp4(3000, 4) },
  ]);
  return new Request("http://edge.test/api/jobs", { method: "POST", body, headers: { "content-type": contentType } });
}

/** The job a twin request with `key` created (the object its source row names is not needed here). */
async function twinJob(userId: string, key: string) {
  const id = newId();
  const source = { id: newId(), name: "a.mp4", size: 3000, contentType: "video/mp4", objectKey: `sources/${id}/twin` };
  return createJob(db, { id, userId, variationsPerVideo: 1, retentionMs: DAY, idempotencyKey: key, sources: [source] }, Date.now());
}

async function sourceObjects(): Promise<string[]> {
  return (await env.BUCKET.list({ prefix: "sources/" })).objects.map((o) => o.key);
}

describe("createJobOnce (Idempotency-Key)", () => {
  it("answers the twin's job when the twin's job committed after the first look, deleting the files this request stored", async () => {
    const { id: userId } = await makeUser();
    const key = crypto.randomUUID();
    const before = await sourceObjects();
    const req = formRequest();
    let refusal: unknown;
    const result = await createJobOnce({ db }, { userId, key, request: req }, async () => {
      // Between createJobOnce's look (nothing yet) and this request's job insert, the twin's job commits.
      const twin = await twinJob(userId, key);
      await createJobFromForm({ db, bucket: env.BUCKET }, { req, userId, retentionMs: DAY, maxFileBytes: 1e6, limits: ROOMY, idempotencyKey: key }).catch(
        (err: unknown) => {
          refusal = err;
          throw err;
        },
      );
      return twin;
    });
    // The database refused the second job for the key; nothing of this request is left.
    expect(String((refusal as Error).message) + String((refusal as { cause?: Error }).cause?.message)).toMatch(/UNIQUE constraint failed: jobs\.user_id, jobs\.idempotency_key/);
    expect(result.replayed).toBe(true);
    expect((await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.userId, userId))).map((j) => j.id)).toEqual([result.job.id]);
    expect(await db.select().from(ingests).where(eq(ingests.userId, userId))).toEqual([]);
    expect((await sourceObjects()).filter((k) => !before.includes(k))).toEqual([]);
  });

  it("answers the twin's job when the key's unique index refuses the insert, leaving the uploads unused", async () => {
    const { id: userId } = await makeUser();
    const key = crypto.randomUUID();
    const uploadId = newId();
    await db.insert(uploads).values({
      id: uploadId,
      userId,
      filename: "big.mp4",
      size: 1000,
      contentType: "video/mp4",
      objectKey: `uploads/${uploadId}`,
      partSize: 1000,
      partCount: 1,
      r2UploadId: "test-upload",
      status: "completed",
      createdAt: Date.now(),
      completedAt: Date.now(),
    });
    const twin = await twinJob(userId, key);
    const input = { id: newId(), userId, variationsPerVideo: 1, retentionMs: DAY, uploadIds: [uploadId], limits: ROOMY, idempotencyKey: key };
    // Without the look first (a race lost by both looks), the database itself refuses a second job for the key.
    await expect(createJobFromUploads(db, input, Date.now())).rejects.toThrow();
    const [row] = await db.select().from(uploads).where(eq(uploads.id, uploadId));
    expect(row!.status).toBe("completed");

    const result = await createJobOnce({ db }, { userId, key, request: new Request("http://edge.test/") }, () => createJobFromUploads(db, input, Date.now()));
    expect(result).toMatchObject({ replayed: true, job: { id: twin.id } });
    expect((await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.userId, userId))).map((j) => j.id)).toEqual([twin.id]);
  });

  it("answers repeats of a key with the job's queue estimate from the shared snapshot: one read of every user's pending work, not one per repeat", async () => {
    const { id: userId } = await makeUser();
    const key = crypto.randomUUID();
    await twinJob(userId, key);
    let reads = 0;
    const queue = sharedQueueSnapshots(async (d, now) => (reads++, readQueueSnapshot(d, now)))("idempotency-test");
    for (let i = 0; i < 3; i++) {
      const again = await createJobOnce({ db, queue }, { userId, key, request: new Request("http://edge.test/") }, () => Promise.reject(new Error("not made twice")));
      expect(again).toMatchObject({ replayed: true, job: { status: "queued", queuePosition: expect.any(Number) } });
    }
    expect(reads).toBe(1);
  });

  it("passes a failure through when no job has the key", async () => {
    const { id: userId } = await makeUser();
    const boom = new Error("quota refused");
    await expect(createJobOnce({ db }, { userId, key: crypto.randomUUID(), request: new Request("http://edge.test/") }, async () => { throw boom; })).rejects.toBe(boom);
  });
});

describe("createOnce for webhooks", () => {
  it("answers the twin's webhook when the twin committed after the first look: the insert fails on the key, the second look finds it", async () => {
    const { id: userId } = await makeUser();
    const key = crypto.randomUUID();
    const input = { userId, url: "https://hooks.example.com/twin", events: ["job.completed"] as const, idempotencyKey: key };
    let looks = 0;
    let twin: Awaited<ReturnType<typeof createWebhook>> | null = null;
    const result = await createOnce(
      { key },
      async () => {
        // The first look finds nothing; the twin commits right after it.
        if (looks++ === 0) {
          twin = await createWebhook(db, input, Date.now());
          return null;
        }
        return findWebhookByIdempotencyKey(db, { userId, key });
      },
      () => createWebhook(db, input, Date.now()),
    );
    expect(looks).toBe(2);
    expect(result.replayed).toBe(true);
    expect(result.value).toMatchObject({ id: twin!.id, secret: twin!.secret });
  });

  it("passes on a failure no twin explains", async () => {
    const boom = new Error("boom");
    await expect(createOnce({ key: crypto.randomUUID() }, async () => null, async () => { throw boom; })).rejects.toBe(boom);
  });
});

