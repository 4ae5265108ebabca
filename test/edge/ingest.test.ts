import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../../db/client";
import type { UserLimits } from "../../db/limits";
import { newId } from "../../db/ids";
import { sourceKey } from "../../db/keys";
import { createUser } from "../../db/queries/users";
import { ingests, jobs, multipartUploads, sources } from "../../db/schema";
import { loadConfig } from "../../edge/env";
import { createJobFromForm, INGEST_TOUCH_MS } from "../../edge/lib/ingest";
import { deleteOrphanObjects } from "../../edge/lifecycle/orphan-objects";
import { fakeMp4, formBody, isolatedDb } from "./helpers";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
/** Per-user limits no test here comes near (the quota tests set their own). */
const ROOMY: UserLimits = { storageBytes: 1e12, activeJobs: 1000, queuedVariations: 1e6, openUploads: 1000, unusedUploads: 1000 };
const enc = new TextEncoder();

// The orphan rule acts on every row and object: each test has a database of its own, and this file's R2 storage
// is its own (its tests run one after another).
let db: Db;
let userId: string;
beforeEach(async () => {
  db = await isolatedDb();
  userId = (await createUser(db, { email: `ingest-${newId()}@test.example`, password: "pw-for-ingest", role: "user" })).id;
});

afterEach(async () => {
  const listing = await env.BUCKET.list();
  await env.BUCKET.delete(listing.objects.map((o) => o.key));
});

const lifecycleDeps = () => ({ db, bucket: env.BUCKET, config: loadConfig(env) });

/**
 * A request whose body is produced on demand: each array item is either bytes to send or a step the test runs at
 * exactly that point of the upload (the reader asks for the next item only once it handled the previous bytes).
 */
function pacedRequest(items: (Uint8Array | (() => Promise<void>))[], contentType: string): Request {
  let i = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const item = items[i++];
          if (item === undefined) return controller.close();
          if (item instanceof Uint8Array) return controller.enqueue(item);
          await item();
        }
      },
    },
    { highWaterMark: 0 },
  );
  // receiveJobForm reads only the headers and the body; a plain object keeps workerd from buffering the stream.
  return { headers: new Headers({ "content-type": contentType }), body } as unknown as Request;
}

describe("form uploads larger than one R2 part", () => {
  const MiB = 1024 * 1024;
  /** A form of one video of `size` bytes, sent 1 MiB at a time; `at(mib)` runs once that many MiB are sent. */
  function oneVideo(size: number, at: Record<number, () => Promise<void>>) {
    const boundary = `----parts${newId()}`;
    const video = fakeMp4(size, 3);
    const items: (Uint8Array | (() => Promise<void>))[] = [
      enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
    ];
    for (let off = 0, mib = 1; off < size; off += MiB, mib++) {
      items.push(video.subarray(off, off + MiB));
      if (at[mib]) items.push(at[mib]!);
    }
    items.push(enc.encode(`\r\n--${boundary}--\r\n`));
    return pacedRequest(items, `multipart/form-data; boundary=${boundary}`);
  }
  const onRecord = async () => (await db.select().from(multipartUploads)).map((r) => r.objectKey);

  it("keeps its R2 multipart upload on record while it is open, and forgets it once completed", async () => {
    let open: string[] = [];
    const req = oneVideo(10 * MiB, { 10: async () => void (open = await onRecord()) });
    const job = await createJobFromForm({ db, bucket: env.BUCKET }, { req, userId, retentionMs: DAY, maxFileBytes: 1e9, limits: ROOMY });
    const [row] = await db.select().from(sources).where(eq(sources.jobId, job.id));
    expect(open).toEqual([row!.objectKey]);
    expect(await onRecord()).toEqual([]);
    expect((await env.BUCKET.head(row!.objectKey))?.size).toBe(10 * MiB);
  });

  it("aborts and forgets the multipart upload of a file refused part-way", async () => {
    let open: string[] = [];
    const req = oneVideo(12 * MiB, { 10: async () => void (open = await onRecord()) });
    await expect(createJobFromForm({ db, bucket: env.BUCKET }, { req, userId, retentionMs: DAY, maxFileBytes: 11 * MiB, limits: ROOMY })).rejects.toMatchObject({ status: 413 });
    expect(open).toHaveLength(1);
    expect(await onRecord()).toEqual([]);
    expect((await env.BUCKET.list()).objects).toEqual([]);
  });
});

describe("form uploads (POST /api/jobs multipart) and the orphan rule", () => {
  it("keeps the first file of a slow multi-file upload while later files are still arriving, hours later", async () => {
    const boundary = `----ingest${newId()}`;
    const first = fakeMp4(3000, 1);
    const second = fakeMp4(3000, 2);
    let skew = 0;
    const clock = () => Date.now() + skew;
    let sweep: Record<string, number> | undefined;
    const req = pacedRequest(
      [
        enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="variations"\r\n\r\n1\r\n`),
        enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
        first,
        enc.encode(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="b.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
        // The second file takes two hours to arrive; the first one is stored by now.
        async () => void (skew = 2 * HOUR),
        second.subarray(0, 1500),
        async () => void (sweep = await deleteOrphanObjects(lifecycleDeps(), clock())),
        second.subarray(1500),
        enc.encode(`\r\n--${boundary}--\r\n`),
      ],
      `multipart/form-data; boundary=${boundary}`,
    );

    const job = await createJobFromForm(
      { db, bucket: env.BUCKET, clock },
      { req, userId, retentionMs: DAY, maxFileBytes: 1e6, limits: ROOMY },
    );
    expect(sweep).toBeDefined();
    expect(job.files.map((f) => f.name)).toEqual(["a.mp4", "b.mp4"]);
    const rows = await db.select().from(sources).where(eq(sources.jobId, job.id)).orderBy(sources.position);
    const stored = await Promise.all(rows.map(async (r) => (await env.BUCKET.get(r.objectKey))?.arrayBuffer()));
    expect(stored.map((b) => b?.byteLength)).toEqual([3000, 3000]);
    expect(await db.select().from(ingests)).toEqual([]);
  });

  it("returns a job whose create committed although its reply was lost, and keeps its sources", async () => {
    let lost = false;
    // The first batch (the job create) commits, then the connection drops before its reply arrives.
    const flaky = new Proxy(db, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop !== "batch") return value;
        return async (...args: unknown[]) => {
          const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (!lost) {
            lost = true;
            throw new Error("fetch failed: connection reset");
          }
          return result;
        };
      },
    });
    const form = formBody([
      { name: "variations", value: "2" },
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(2000, 3) },
      { name: "videos", filename: "b.mp4", bytes: fakeMp4(2000, 4) },
    ]);
    const req = new Request("http://edge.test/api/jobs", { method: "POST", body: form.body, headers: { "content-type": form.contentType } });

    const job = await createJobFromForm({ db: flaky, bucket: env.BUCKET }, { req, userId, retentionMs: DAY, maxFileBytes: 1e6, limits: ROOMY });
    expect(lost).toBe(true);
    expect(job).toMatchObject({ status: "queued", totalVariations: 4 });
    expect(await db.select({ id: jobs.id }).from(jobs)).toEqual([{ id: job.id }]);
    for (const r of await db.select().from(sources).where(eq(sources.jobId, job.id))) {
      expect(await env.BUCKET.head(r.objectKey)).not.toBeNull();
    }
  });

  it("deletes what a dead form upload stored once its ingest has not been touched for an hour, and keeps a live one's", async () => {
    const later = Date.now() + 2 * HOUR;
    const dead = newId();
    const live = newId();
    await db.insert(ingests).values([
      { id: dead, userId, createdAt: later - 3 * HOUR, touchedAt: later - 2 * HOUR },
      { id: live, userId, createdAt: later - 3 * HOUR, touchedAt: later - 10 * 60_000 },
    ]);
    await env.BUCKET.put(sourceKey(dead, "s1"), fakeMp4(100));
    await env.BUCKET.put(sourceKey(live, "s1"), fakeMp4(100));

    expect(await deleteOrphanObjects(lifecycleDeps(), later)).toMatchObject({ staleIngests: 1 });
    expect(await env.BUCKET.head(sourceKey(dead, "s1"))).toBeNull();
    expect(await env.BUCKET.head(sourceKey(live, "s1"))).not.toBeNull();
    expect((await db.select({ id: ingests.id }).from(ingests)).map((r) => r.id)).toEqual([live]);
  });

  it("never drops a form upload after less than an hour without bytes: a touch 61 minutes old stays, one past the hour plus the refresh interval goes", async () => {
    const later = Date.now() + 2 * HOUR;
    const lagging = newId();
    const dead = newId();
    await db.insert(ingests).values([
      { id: lagging, userId, createdAt: later - 3 * HOUR, touchedAt: later - HOUR - 60_000 },
      { id: dead, userId, createdAt: later - 3 * HOUR, touchedAt: later - HOUR - INGEST_TOUCH_MS - 1000 },
    ]);
    await env.BUCKET.put(sourceKey(lagging, "s1"), fakeMp4(100));
    await env.BUCKET.put(sourceKey(dead, "s1"), fakeMp4(100));

    expect(await deleteOrphanObjects(lifecycleDeps(), later)).toMatchObject({ staleIngests: 1 });
    expect((await db.select({ id: ingests.id }).from(ingests)).map((r) => r.id)).toEqual([lagging]);
    expect(await env.BUCKET.head(sourceKey(lagging, "s1"))).not.toBeNull();
    expect(await env.BUCKET.head(sourceKey(dead, "s1"))).toBeNull();
  });

  for (const when of ["while bytes still arrive", "when the last bytes arrive"] as const) {
    it(`answers 409 upload_expired and creates nothing when the upload stalled for over an hour (noticed ${when})`, async () => {
      const boundary = `----ingest${newId()}`;
      let skew = 0;
      const clock = () => Date.now() + skew;
      const req = pacedRequest(
        [
          enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
          fakeMp4(3000, 1),
          enc.encode(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="b.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
          // Nothing arrives for two hours: the orphan rule drops the ingest and the first file.
          async () => void (await deleteOrphanObjects(lifecycleDeps(), Date.now() + 2 * HOUR)),
          // The next bytes come late enough to refresh the ingest, or so soon that only the create finds it gone.
          async () => void (skew = when === "while bytes still arrive" ? 10 * 60_000 : 0),
          fakeMp4(3000, 2),
          enc.encode(`\r\n--${boundary}--\r\n`),
        ],
        `multipart/form-data; boundary=${boundary}`,
      );
      await expect(
        createJobFromForm({ db, bucket: env.BUCKET, clock }, { req, userId, retentionMs: DAY, maxFileBytes: 1e6, limits: ROOMY }),
      ).rejects.toMatchObject({ status: 409, code: "upload_expired" });
      expect(await db.select().from(jobs)).toEqual([]);
      expect(await db.select().from(ingests)).toEqual([]);
      expect((await env.BUCKET.list({ prefix: "sources/" })).objects).toEqual([]);
    });
  }
});
