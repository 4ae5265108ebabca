import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cancelVariation, failVariation, finishVariation } from "../../db/queries/variations";
import { jobs, sources, variations } from "../../db/schema";
import worker from "../../edge/index";
import { Job } from "../../edge/lib/schemas";
import { claimAll, db, jobRow, ORIGIN, seedJob, signIn, variationsOf, type Session } from "./helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const post = (s: Session, path: string, json?: unknown) => s.call(path, { method: "POST", json: json ?? {} });

/** What a runner does once its watch fires: stop FFmpeg, then settle each running variation as stopped. */
async function runnerStops(jobId: string, runnerId: string) {
  for (const v of await variationsOf(jobId)) {
    if (v.status === "running") {
      await cancelVariation(db, { attempt: v.claims, variationId: v.id, runnerId, stopStage: "q", now: Date.now() });
    }
  }
}

/** Claims every queued variation of the job and settles them: the first `fail` fail, the rest complete. */
async function runAll(jobId: string, runnerId: string, fail = 0) {
  await claimAll(jobId, runnerId);
  let failed = 0;
  for (const v of await variationsOf(jobId)) {
    if (v.status !== "running") continue;
    const own = { variationId: v.id, runnerId, attempt: v.claims, now: Date.now() };
    if (failed++ < fail) await failVariation(db, { ...own, error: "ffmpeg exited with code 1" });
    else await finishVariation(db, { ...own, outputKey: `outputs/${jobId}/${v.id}.a${v.claims}.mp4`, outputSize: 10 });
  }
}

const expireJob = (jobId: string) => db.update(jobs).set({ expiresAt: Date.now() - 1000 }).where(eq(jobs.id, jobId));

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(await res.json()).toMatchObject({ error: { code } });
}

describe("POST /api/jobs/:id/pause and /resume", () => {
  it("pauses a queued job at once (200, variations stay queued) and resumes it to queued", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    const res = await post(s, `/api/jobs/${seeded.id}/pause`);
    expect(res.status).toBe(200);
    expect(Job.parse(await res.json())).toMatchObject({ status: "paused", previousStatus: "queued" });
    expect((await variationsOf(seeded.id)).map((v) => v.status)).toEqual(["queued", "queued"]);

    const resumed = await post(s, `/api/jobs/${seeded.id}/resume`);
    expect(resumed.status).toBe(200);
    expect(Job.parse(await resumed.json())).toMatchObject({ status: "queued" });
  });

  it("pauses a processing job: answers 200 once its runner stopped, the stopped variation is queued again with the attempt refunded, completed ones stay", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 3 });
    await claimAll(seeded.id, "r-pause", Date.now(), 30_000, 2);
    const done = (await variationsOf(seeded.id)).find((v) => v.status === "running")!;
    await finishVariation(db, { variationId: done.id, runnerId: "r-pause", attempt: 1, outputKey: `outputs/${seeded.id}/${done.id}.a1.mp4`, outputSize: 10, now: Date.now() });
    const pending = post(s, `/api/jobs/${seeded.id}/pause`);
    await sleep(300);
    await runnerStops(seeded.id, "r-pause");
    const res = await pending;
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({ status: "paused", previousStatus: "processing", completedVariations: 1, cancelledVariations: 0 });
    const rows = await variationsOf(seeded.id);
    expect(rows.filter((v) => v.status === "completed")).toHaveLength(1);
    expect(rows.filter((v) => v.status === "queued").map((v) => v.attempts)).toEqual([0, 0]);
    expect((await jobRow(seeded.id))!.status).toBe("paused");

    const resumed = await post(s, `/api/jobs/${seeded.id}/resume`);
    expect(resumed.status).toBe(200);
    expect(Job.parse(await resumed.json())).toMatchObject({ status: "processing", completedVariations: 1 });
  });

  it("answers 202 while the runners of a paused job are still stopping", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 1 });
    await claimAll(seeded.id, "r-slow");
    const res = await post(s, `/api/jobs/${seeded.id}/pause`);
    expect(res.status).toBe(202);
    expect(Job.parse(await res.json())).toMatchObject({ status: "paused" });
  });

  it("answers a pause sent again (a retry after a lost answer) with the paused job, not a refusal", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    expect((await post(s, `/api/jobs/${seeded.id}/pause`)).status).toBe(200);
    const again = await post(s, `/api/jobs/${seeded.id}/pause`);
    expect(again.status).toBe(200);
    expect(Job.parse(await again.json())).toMatchObject({ status: "paused", previousStatus: "paused" });
  });

  it("refuses to pause a finished job (409 not_pausable with the job) and hides another user's job (404)", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 1 });
    await runAll(seeded.id, "r-done");
    const res = await post(s, `/api/jobs/${seeded.id}/pause`);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "not_pausable" }, job: { status: "completed" } });
    const other = await signIn();
    await expectError(await post(other, `/api/jobs/${seeded.id}/pause`), 404, "not_found");
    await expectError(await post(other, `/api/jobs/${seeded.id}/resume`), 404, "not_found");
  });

  it("refuses to resume an active job (409 job_active) or a completed one (409 not_resumable)", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 1 });
    await expectError(await post(s, `/api/jobs/${seeded.id}/resume`), 409, "job_active");
    await runAll(seeded.id, "r-c");
    await expectError(await post(s, `/api/jobs/${seeded.id}/resume`), 409, "not_resumable");
  });

  it("cancels a paused job: queued variations cancelled, job cancelled", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    await post(s, `/api/jobs/${seeded.id}/pause`);
    const res = await post(s, `/api/jobs/${seeded.id}/cancel`);
    expect(res.status).toBe(200);
    expect(Job.parse(await res.json())).toMatchObject({ status: "cancelled", previousStatus: "paused", cancelledVariations: 2 });
  });
});

describe("POST /api/jobs/:id/resume on a cancelled job", () => {
  it("queues the cancelled variations again (attempts reset), keeps the completed ones and clears the cancel and the expiry", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 2 });
    await claimAll(seeded.id, "r-cr", Date.now(), 30_000, 2);
    const running = (await variationsOf(seeded.id)).filter((v) => v.status === "running");
    await finishVariation(db, { variationId: running[0]!.id, runnerId: "r-cr", attempt: 1, outputKey: `outputs/${seeded.id}/${running[0]!.id}.a1.mp4`, outputSize: 10, now: Date.now() });
    const cancelling = post(s, `/api/jobs/${seeded.id}/cancel`, { reason: "oops" });
    await sleep(300);
    await runnerStops(seeded.id, "r-cr");
    expect(Job.parse(await (await cancelling).json())).toMatchObject({ status: "cancelled", cancelledVariations: 3 });

    const res = await post(s, `/api/jobs/${seeded.id}/resume`);
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({
      status: "processing",
      completedVariations: 1,
      cancelledVariations: 0,
      cancelledAt: null,
      cancelReason: null,
      cancelledBy: null,
      completedAt: null,
      expiresAt: null,
    });
    const rows = await variationsOf(seeded.id);
    expect(rows.filter((v) => v.status === "queued").map((v) => [v.attempts, v.finishedAt, v.stopStage])).toEqual([
      [0, null, null],
      [0, null, null],
      [0, null, null],
    ]);
    expect((await jobRow(seeded.id))!.cancelRequestedAt).toBeNull();

    // It finishes like any job, and its expiry starts again then.
    await runAll(seeded.id, "r-cr2");
    const after = await jobRow(seeded.id);
    expect(after).toMatchObject({ status: "completed" });
    expect(after!.expiresAt).toBeGreaterThan(Date.now());
  });

  it("queues its failed variations again too (every not-completed one), so the resumed job ends with every output", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 3 });
    await claimAll(seeded.id, "r-cf", Date.now(), 30_000, 1);
    const [first] = (await variationsOf(seeded.id)).filter((v) => v.status === "running");
    await failVariation(db, { variationId: first!.id, runnerId: "r-cf", attempt: 1, error: "ffmpeg exited with code 1", now: Date.now() });
    expect(Job.parse(await (await post(s, `/api/jobs/${seeded.id}/cancel`)).json())).toMatchObject({ status: "cancelled", failedVariations: 1, cancelledVariations: 2 });

    const res = await post(s, `/api/jobs/${seeded.id}/resume`);
    expect(res.status).toBe(200);
    expect(Job.parse(await res.json())).toMatchObject({ status: expect.stringMatching(/^(queued|processing)$/), failedVariations: 0, cancelledVariations: 0 });
    expect((await variationsOf(seeded.id)).map((v) => [v.status, v.attempts, v.error])).toEqual([
      ["queued", 0, null],
      ["queued", 0, null],
      ["queued", 0, null],
    ]);
    await runAll(seeded.id, "r-cf2");
    expect(await jobRow(seeded.id)).toMatchObject({ status: "completed" });
    expect((await variationsOf(seeded.id)).map((v) => v.status)).toEqual(["completed", "completed", "completed"]);
  });

  it("answers nothing_to_resume for a cancelled job whose every variation completed before the cancel landed", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 1 });
    await post(s, `/api/jobs/${seeded.id}/cancel`);
    await db.update(variations).set({ status: "completed" }).where(eq(variations.jobId, seeded.id));
    await expectError(await post(s, `/api/jobs/${seeded.id}/resume`), 409, "nothing_to_resume");
  });

  it("answers 410 expired once the job's expiry passed", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 1 });
    await post(s, `/api/jobs/${seeded.id}/cancel`);
    await expireJob(seeded.id);
    await expectError(await post(s, `/api/jobs/${seeded.id}/resume`), 410, "expired");
  });
});

describe("POST /api/jobs/:id/retry", () => {
  it("queues the failed variations again with their seeds (attempts reset, error cleared) and the job back to processing", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 3 });
    await runAll(seeded.id, "r-rt", 1);
    const before = await variationsOf(seeded.id);
    const failed = before.find((v) => v.status === "failed")!;
    expect((await jobRow(seeded.id))!.status).toBe("completed");

    const res = await post(s, `/api/jobs/${seeded.id}/retry`);
    expect(res.status).toBe(200);
    expect(Job.parse(await res.json())).toMatchObject({
      status: "processing",
      completedVariations: 2,
      failedVariations: 0,
      completedAt: null,
      expiresAt: null,
      error: null,
    });
    const row = (await variationsOf(seeded.id)).find((v) => v.id === failed.id)!;
    expect(row).toMatchObject({ status: "queued", seed: failed.seed, attempts: 0, error: null, params: null, outputKey: null, finishedAt: null });

    await runAll(seeded.id, "r-rt2");
    expect(await jobRow(seeded.id)).toMatchObject({ status: "completed" });
  });

  it("answers 409 nothing_to_retry without failures, 409 job_active while active, 409 not_retryable when cancelled, 410 after expiry, 404 for another user", async () => {
    const s = await signIn();
    const active = await seedJob(s.id, { files: 1, variations: 1 });
    await expectError(await post(s, `/api/jobs/${active.id}/retry`), 409, "job_active");
    await post(s, `/api/jobs/${active.id}/pause`);
    await expectError(await post(s, `/api/jobs/${active.id}/retry`), 409, "job_active");
    await post(s, `/api/jobs/${active.id}/cancel`);
    await expectError(await post(s, `/api/jobs/${active.id}/retry`), 409, "not_retryable");

    const clean = await seedJob(s.id, { files: 1, variations: 1 });
    await runAll(clean.id, "r-clean");
    await expectError(await post(s, `/api/jobs/${clean.id}/retry`), 409, "nothing_to_retry");

    const failedJob = await seedJob(s.id, { files: 1, variations: 1 });
    await runAll(failedJob.id, "r-f", 1);
    expect((await jobRow(failedJob.id))!.status).toBe("failed");
    const other = await signIn();
    await expectError(await post(other, `/api/jobs/${failedJob.id}/retry`), 404, "not_found");
    await expireJob(failedJob.id);
    await expectError(await post(s, `/api/jobs/${failedJob.id}/retry`), 410, "expired");
  });
});

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

/** The worker with these environment variables on top of the test bindings (small limits). */
function postWith(vars: Record<string, string>, s: Session, path: string, json: unknown) {
  const headers = new Headers({ cookie: s.cookie, origin: ORIGIN, "content-type": "application/json" });
  return worker.fetch(new Request(ORIGIN + path, { method: "POST", headers, body: JSON.stringify(json) }), { ...env, ...vars }, ctx);
}

describe("POST /api/jobs/:id/more", () => {
  it("adds n variations per source, numbered after the existing ones with seeds new to the job, and the job runs again", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 2 });
    await runAll(seeded.id, "r-more");
    expect((await jobRow(seeded.id))!.status).toBe("completed");

    const res = await post(s, `/api/jobs/${seeded.id}/more`, { variations: 3 });
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({ status: "processing", totalVariations: 10, variationsPerVideo: 5, completedVariations: 4, expiresAt: null });
    for (const file of job.files) {
      expect(file.variations!.map((v) => [v.index, v.status])).toEqual([
        [1, "completed"],
        [2, "completed"],
        [3, "queued"],
        [4, "queued"],
        [5, "queued"],
      ]);
    }
    const rows = await variationsOf(seeded.id);
    expect(new Set(rows.map((v) => v.seed)).size).toBe(10);

    await runAll(seeded.id, "r-more2");
    const after = await jobRow(seeded.id);
    expect(after).toMatchObject({ status: "completed", totalVariations: 10 });
    expect(after!.expiresAt).toBeGreaterThan(Date.now());
  });

  it("adds variations to a cancelled job (its cancel cleared) and to a failed one", async () => {
    const s = await signIn();
    const cancelled = await seedJob(s.id, { files: 1, variations: 1 });
    await post(s, `/api/jobs/${cancelled.id}/cancel`);
    const res = await post(s, `/api/jobs/${cancelled.id}/more`, { variations: 1 });
    expect(res.status).toBe(200);
    expect(Job.parse(await res.json())).toMatchObject({ status: "queued", totalVariations: 2, cancelledAt: null });

    const failed = await seedJob(s.id, { files: 1, variations: 1 });
    await runAll(failed.id, "r-mf", 1);
    const again = await post(s, `/api/jobs/${failed.id}/more`, { variations: 2 });
    expect(again.status).toBe(200);
    expect(Job.parse(await again.json())).toMatchObject({ status: "processing", totalVariations: 3 });
  });

  it("validates n (400), refuses an active job (409), an expired one or one whose source is gone (410), and another user's (404)", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 1 });
    for (const bad of [0, 21, "many", null, true, [7], "0x10"]) {
      const res = await post(s, `/api/jobs/${seeded.id}/more`, { variations: bad });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { field: "variations" } });
    }
    await expectError(await post(s, `/api/jobs/${seeded.id}/more`, { variations: 1 }), 409, "job_active");
    await runAll(seeded.id, "r-v");
    const other = await signIn();
    await expectError(await post(other, `/api/jobs/${seeded.id}/more`, { variations: 1 }), 404, "not_found");

    const [source] = await db.select().from(sources).where(eq(sources.jobId, seeded.id));
    await env.BUCKET.delete(source!.objectKey);
    await expectError(await post(s, `/api/jobs/${seeded.id}/more`, { variations: 1 }), 410, "source_gone");
    await expireJob(seeded.id);
    await expectError(await post(s, `/api/jobs/${seeded.id}/more`, { variations: 1 }), 410, "expired");
  });

  it("refuses more past 100 variations per video (409 too_many_variations), so cancel + more in a loop cannot grow a job for ever", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 20 });
    for (let round = 0; round < 4; round++) {
      await post(s, `/api/jobs/${seeded.id}/cancel`);
      expect((await post(s, `/api/jobs/${seeded.id}/more`, { variations: 20 })).status).toBe(200);
    }
    await post(s, `/api/jobs/${seeded.id}/cancel`);
    const refused = await post(s, `/api/jobs/${seeded.id}/more`, { variations: 1 });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ error: { code: "too_many_variations", message: expect.stringContaining("at most 100 variations per video") } });
    expect(await variationsOf(seeded.id)).toHaveLength(100);
    expect((await jobRow(seeded.id))!.status).toBe("cancelled");
  });

  it("applies the queued-variations limit like a new job: 429 quota_exceeded with Retry-After, nothing added", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 1 });
    await runAll(seeded.id, "r-q");
    await seedJob(s.id, { files: 1, variations: 3 });
    // 3 queued + 2 × 1 = 5 > 4.
    const res = await postWith({ USER_QUEUED_VARIATIONS: "4" }, s, `/api/jobs/${seeded.id}/more`, { variations: 1 });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringContaining("queued variations") } });
    expect(await variationsOf(seeded.id)).toHaveLength(2);
    expect((await jobRow(seeded.id))!.status).toBe("completed");
    // Within the limit it goes through.
    expect((await postWith({ USER_QUEUED_VARIATIONS: "5" }, s, `/api/jobs/${seeded.id}/more`, { variations: 1 })).status).toBe(200);
  });

  it("refuses more variations, a retry and a resume to a user already over their storage quota, as a new job would be", async () => {
    const s = await signIn();
    const done = await seedJob(s.id, { files: 1, variations: 1 });
    await runAll(done.id, "r-sq");
    const failed = await seedJob(s.id, { files: 1, variations: 2 });
    await runAll(failed.id, "r-sq2", 1);
    const cancelled = await seedJob(s.id, { files: 1, variations: 1 });
    await post(s, `/api/jobs/${cancelled.id}/cancel`);
    // The sources alone (3 × 1000 bytes) are over a 2000-byte quota.
    const over = { USER_STORAGE_BYTES: "2000" };
    for (const [job, path, body] of [
      [done, "more", { variations: 1 }],
      [failed, "retry", {}],
      [cancelled, "resume", {}],
    ] as const) {
      const res = await postWith(over, s, `/api/jobs/${job.id}/${path}`, body);
      expect(res.status, path).toBe(409);
      expect(await res.json()).toMatchObject({ error: { code: "quota_exceeded", message: expect.stringMatching(/storage/i) } });
    }
    expect((await variationsOf(done.id)).map((v) => v.status)).toEqual(["completed"]);
    expect((await jobRow(failed.id))!.status).toBe("completed");
    expect((await jobRow(cancelled.id))!.status).toBe("cancelled");
    // With room, the same requests go through.
    expect((await postWith({ USER_STORAGE_BYTES: "100000" }, s, `/api/jobs/${done.id}/more`, { variations: 1 })).status).toBe(200);
  });

  it("applies the limits to retry and resume too", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    await runAll(seeded.id, "r-ql", 1);
    await seedJob(s.id, { files: 1, variations: 1 });
    await expectError(await postWith({ USER_ACTIVE_JOBS: "1" }, s, `/api/jobs/${seeded.id}/retry`, {}), 429, "quota_exceeded");
    expect((await jobRow(seeded.id))!.status).toBe("completed");
    expect((await variationsOf(seeded.id)).filter((v) => v.status === "failed")).toHaveLength(1);
  });
});

describe("Idempotency-Key on resume, retry and more (a retry after a lost answer)", () => {
  const keyed = (s: Session, path: string, key: string, json?: unknown) =>
    s.call(path, { method: "POST", json: json ?? {}, headers: { "Idempotency-Key": key } });

  it("answers more sent again with the same key with the job it made, once: no second batch of variations, even after the job finished again", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 2 });
    await runAll(seeded.id, "r-more-key");
    const key = crypto.randomUUID();
    const first = await keyed(s, `/api/jobs/${seeded.id}/more`, key, { variations: 3 });
    expect(first.status).toBe(200);
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    expect(Job.parse(await first.json())).toMatchObject({ status: "processing", totalVariations: 10 });

    const again = await keyed(s, `/api/jobs/${seeded.id}/more`, key, { variations: 3 });
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(Job.parse(await again.json())).toMatchObject({ id: seeded.id, totalVariations: 10 });

    await runAll(seeded.id, "r-more-key2");
    const late = await keyed(s, `/api/jobs/${seeded.id}/more`, key, { variations: 3 });
    expect(late.status).toBe(200);
    expect(Job.parse(await late.json())).toMatchObject({ status: "completed", totalVariations: 10 });
    expect(await variationsOf(seeded.id)).toHaveLength(10);
    // Without a key, a repeat is a new request: refused while the job runs, as before.
    await post(s, `/api/jobs/${seeded.id}/more`, { variations: 1 });
    await expectError(await post(s, `/api/jobs/${seeded.id}/more`, { variations: 1 }), 409, "job_active");
  });

  it("adds one batch when two requests with the same key race, answering both with the job", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    await runAll(seeded.id, "r-more-twins");
    const key = crypto.randomUUID();
    const answers = await Promise.all([1, 2].map(() => keyed(s, `/api/jobs/${seeded.id}/more`, key, { variations: 2 })));
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(await variationsOf(seeded.id)).toHaveLength(4);
    expect((await jobRow(seeded.id))!.totalVariations).toBe(4);
  });

  it("answers resume and retry sent again with the same key with the job instead of 409 job_active", async () => {
    const s = await signIn();
    const paused = await seedJob(s.id, { files: 1, variations: 2 });
    expect((await post(s, `/api/jobs/${paused.id}/pause`)).status).toBe(200);
    const resumeKey = crypto.randomUUID();
    expect((await keyed(s, `/api/jobs/${paused.id}/resume`, resumeKey)).status).toBe(200);
    const resumed = await keyed(s, `/api/jobs/${paused.id}/resume`, resumeKey);
    expect(resumed.status).toBe(200);
    expect(resumed.headers.get("Idempotent-Replayed")).toBe("true");
    expect(Job.parse(await resumed.json())).toMatchObject({ id: paused.id, status: "queued" });

    const failed = await seedJob(s.id, { files: 1, variations: 2 });
    await runAll(failed.id, "r-retry-key", 1);
    const retryKey = crypto.randomUUID();
    expect((await keyed(s, `/api/jobs/${failed.id}/retry`, retryKey)).status).toBe(200);
    const retried = await keyed(s, `/api/jobs/${failed.id}/retry`, retryKey);
    expect(retried.status).toBe(200);
    expect(retried.headers.get("Idempotent-Replayed")).toBe("true");
    expect(Job.parse(await retried.json())).toMatchObject({ id: failed.id, status: "processing" });
  });

  it("refuses a key that asked the job for something else (422 idempotency_key_reused) and a malformed one (400), changing nothing", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    await runAll(seeded.id, "r-more-reused");
    const key = crypto.randomUUID();
    expect((await keyed(s, `/api/jobs/${seeded.id}/more`, key, { variations: 1 })).status).toBe(200);
    await expectError(await keyed(s, `/api/jobs/${seeded.id}/more`, key, { variations: 2 }), 422, "idempotency_key_reused");
    await expectError(await keyed(s, `/api/jobs/${seeded.id}/retry`, key), 422, "idempotency_key_reused");
    await expectError(await keyed(s, `/api/jobs/${seeded.id}/more`, "not a key", { variations: 1 }), 400, "invalid_request");
    expect(await variationsOf(seeded.id)).toHaveLength(3);
  });
});
