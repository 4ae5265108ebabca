import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { ingests, jobs } from "../../db/schema";
import { Job } from "../../edge/lib/schemas";
import { db, fakeMp4, formBody, type Session, signIn } from "./helpers";

const KEY = "Idempotency-Key";

function form(bytes = fakeMp4(4000, 3)) {
  return formBody([
    { name: "variations", value: "2" },
    { name: "videos", filename: "clip.mp4", bytes },
  ]);
}

async function postForm(s: Session, key: string | null, body = form()) {
  return s.call("/api/jobs", {
    method: "POST",
    body: body.body,
    headers: { "content-type": body.contentType, ...(key === null ? {} : { [KEY]: key }) },
  });
}

async function jobIdsOf(userId: string): Promise<string[]> {
  return (await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.userId, userId))).map((r) => r.id);
}

async function sourceObjects(): Promise<string[]> {
  return (await env.BUCKET.list({ prefix: "sources/" })).objects.map((o) => o.key);
}

async function completedUpload(s: Session): Promise<string> {
  const bytes = fakeMp4(1000);
  const start = await s.call("/api/uploads", { method: "POST", json: { filename: "big.mp4", size: bytes.length } });
  const { id } = (await start.json()) as { id: string };
  expect((await s.call(`/api/uploads/${id}/parts/1`, { method: "PUT", body: bytes })).status).toBe(200);
  expect((await s.call(`/api/uploads/${id}/complete`, { method: "POST" })).status).toBe(200);
  return id;
}

describe("POST /api/jobs with an Idempotency-Key", () => {
  it("answers a form POST sent again with the same key (its answer was lost) with the job the first created, storing nothing more", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const first = await postForm(s, key);
    expect(first.status).toBe(202);
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    const job = Job.parse(await first.json());
    const stored = await sourceObjects();

    const again = await postForm(s, key);
    expect(again.status).toBe(202);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(Job.parse(await again.json()).id).toBe(job.id);
    expect(await jobIdsOf(s.id)).toEqual([job.id]);
    expect((await sourceObjects()).sort()).toEqual(stored.sort());

    // A new key is a new job.
    const other = await postForm(s, crypto.randomUUID());
    expect(other.status).toBe(202);
    expect((await jobIdsOf(s.id)).sort()).toEqual([job.id, Job.parse(await other.json()).id].sort());
  });

  it("creates the job on a retry when the first request with the key broke off mid-body (no job, no replay, no refusal)", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const { body, contentType } = form(fakeMp4(64 * 1024, 6));
    let sent = false;
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return controller.error(new Error("connection lost"));
        sent = true;
        controller.enqueue(body.subarray(0, body.length >> 1));
      },
    });
    const dead = await s
      .call("/api/jobs", { method: "POST", body: broken, headers: { "content-type": contentType, [KEY]: key }, duplex: "half" } as RequestInit)
      .catch(() => null);
    expect(dead?.status ?? 0).not.toBe(202);
    expect(await jobIdsOf(s.id)).toEqual([]);

    const retry = await postForm(s, key);
    expect(retry.status).toBe(202);
    expect(retry.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await jobIdsOf(s.id)).toEqual([Job.parse(await retry.json()).id]);
  });

  it("keeps keys per user: another user's request with the same key creates that user's own job", async () => {
    const [a, b] = [await signIn(), await signIn()];
    const key = `shared-${crypto.randomUUID()}`;
    const ja = Job.parse(await (await postForm(a, key)).json());
    const res = await postForm(b, key);
    expect(res.status).toBe(202);
    expect(res.headers.get("Idempotent-Replayed")).toBeNull();
    const jb = Job.parse(await res.json());
    expect(jb.id).not.toBe(ja.id);
    expect(await jobIdsOf(b.id)).toEqual([jb.id]);
  });

  it("answers a JSON POST retried with its key with 202 and the same job instead of 409 upload_used", async () => {
    const s = await signIn();
    const upload = await completedUpload(s);
    const key = crypto.randomUUID();
    const body = { uploads: [upload], variations: 2 };
    const first = await s.call("/api/jobs", { method: "POST", json: body, headers: { [KEY]: key } });
    expect(first.status).toBe(202);
    const job = Job.parse(await first.json());
    const again = await s.call("/api/jobs", { method: "POST", json: body, headers: { [KEY]: key } });
    expect(again.status).toBe(202);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(Job.parse(await again.json()).id).toBe(job.id);
    expect(await jobIdsOf(s.id)).toEqual([job.id]);
  });

  it("makes one job of two JSON POSTs with the same key and uploads sent at once: both answer 202 with it, one as a replay", async () => {
    const s = await signIn();
    const upload = await completedUpload(s);
    const key = crypto.randomUUID();
    const body = { uploads: [upload], variations: 2 };
    const answers = await Promise.all([0, 1].map(() => s.call("/api/jobs", { method: "POST", json: body, headers: { [KEY]: key } })));
    expect(answers.map((a) => a.status)).toEqual([202, 202]);
    const ids = await Promise.all(answers.map(async (a) => Job.parse(await a.json()).id));
    expect(ids[0]).toBe(ids[1]);
    expect(answers.map((a) => a.headers.get("Idempotent-Replayed")).sort()).toEqual(["true", null].sort());
    expect(await jobIdsOf(s.id)).toEqual([ids[0]]);
  });

  it("refuses a malformed key with 400 naming the header, creating and storing nothing", async () => {
    const s = await signIn();
    const before = await sourceObjects();
    for (const bad of ["has space", "x".repeat(256), "tab\tinside"]) {
      const res = await postForm(s, bad);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: "invalid_request", field: KEY } });
    }
    expect(await jobIdsOf(s.id)).toEqual([]);
    expect((await sourceObjects()).sort()).toEqual(before.sort());
  });

  it("makes one job of two form POSTs with the same key at once: the one that commits second answers the first's job and its files are deleted", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const before = await sourceObjects();
    const { body, contentType } = form(fakeMp4(64 * 1024, 5));
    // The first request sends half its body, then waits for the test: its twin overtakes it.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const half = body.length >> 1;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 0) {
          controller.enqueue(body.subarray(0, half));
          sent = half;
          return;
        }
        await gate;
        controller.enqueue(body.subarray(half));
        controller.close();
      },
    });
    const firstAnswer = s.call("/api/jobs", {
      method: "POST",
      body: stream,
      headers: { "content-type": contentType, [KEY]: key },
      duplex: "half",
    } as RequestInit);
    // The first request is storing its file (its ingest is recorded before its first object).
    for (let i = 0; i < 500 && !(await db.select().from(ingests).where(eq(ingests.userId, s.id))).length; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await db.select().from(ingests).where(eq(ingests.userId, s.id))).toHaveLength(1);

    const twin = await postForm(s, key);
    expect(twin.status).toBe(202);
    const job = Job.parse(await twin.json());

    release();
    const first = await firstAnswer;
    expect(first.status).toBe(202);
    expect(first.headers.get("Idempotent-Replayed")).toBe("true");
    expect(Job.parse(await first.json()).id).toBe(job.id);
    expect(await jobIdsOf(s.id)).toEqual([job.id]);
    expect(await db.select().from(ingests).where(eq(ingests.userId, s.id))).toEqual([]);
    const added = (await sourceObjects()).filter((k) => !before.includes(k));
    expect(added.length).toBe(1);
    expect(added.every((k) => k.startsWith(`sources/${job.id}/`))).toBe(true);
  });
});
