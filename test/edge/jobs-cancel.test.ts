import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { cancelVariation, finishVariation } from "../../db/queries/variations";
import { BulkCancelResults, Job } from "../../edge/lib/schemas";
import { call, claimAll, db, jobRow, seedJob, signIn, variationsOf } from "./helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a runner does once its cancel watch fires: stop FFmpeg, then mark each running variation cancelled. */
async function runnerStops(jobId: string, runnerId: string) {
  for (const v of await variationsOf(jobId)) {
    if (v.status === "running") {
      await cancelVariation(db, { attempt: 1, variationId: v.id, runnerId, stopStage: "q", now: Date.now() });
    }
  }
}

async function runnerFinishesAll(jobId: string, runnerId: string) {
  for (const v of await variationsOf(jobId)) {
    if (v.status === "running") {
      await finishVariation(db, { attempt: 1,
        variationId: v.id,
        runnerId,
        outputKey: `outputs/${jobId}/${v.id}.mp4`,
        outputSize: 100,
        now: Date.now(),
      });
    }
  }
}

describe("POST /api/jobs/:id/cancel", () => {
  it("cancels a queued job at once: 200 cancelled, every variation cancelled, with who, why and when", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 3 });
    const res = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", json: { reason: "wrong clips" } });
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({
      status: "cancelled",
      previousStatus: "queued",
      cancelReason: "wrong clips",
      cancelledBy: s.email,
      cancelledVariations: 6,
      completedVariations: 0,
      downloadUrl: null,
    });
    expect(job.cancelledAt).toMatch(/Z$/);
    expect(Date.parse(job.expiresAt!) - Date.parse(job.completedAt!)).toBe(24 * 60 * 60 * 1000);
    expect((await variationsOf(seeded.id)).every((v) => v.status === "cancelled")).toBe(true);
  });

  it("cancels with an empty JSON body, refuses a reason it cannot read as JSON, and cancels nothing then", async () => {
    const s = await signIn();
    const empty = await seedJob(s.id);
    const res = await s.call(`/api/jobs/${empty.id}/cancel`, { method: "POST", headers: { "content-type": "application/json" } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "cancelled", cancelReason: null });

    // A reason sent as text/plain was dropped without a word: the job was cancelled with no reason.
    const plain = await seedJob(s.id);
    const refused = await s.call(`/api/jobs/${plain.id}/cancel`, { method: "POST", headers: { "content-type": "text/plain" }, body: '{"reason":"wrong clips"}' });
    expect(refused.status).toBe(415);
    expect(await refused.json()).toMatchObject({ error: { code: "unsupported_content_type" } });
    expect((await variationsOf(plain.id)).every((v) => v.status === "queued")).toBe(true);
  });

  it("accepts a request without a body", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id);
    const res = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "cancelled", cancelReason: null });
  });

  it("moves a processing job to cancelling, cancels its queued variations and answers 200 once the runner has stopped", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 3 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner, Date.now(), 30_000, 1); // one running, two still queued
    const pending = s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", json: {} });

    // Meanwhile, as the runner's watch would see it:
    let row = await jobRow(seeded.id);
    for (let i = 0; i < 50 && row!.status !== "cancelling"; i++) {
      await sleep(50);
      row = await jobRow(seeded.id);
    }
    expect(row!.status).toBe("cancelling");
    expect(row!.cancelRequestedAt).not.toBeNull();
    const mid = await variationsOf(seeded.id);
    expect(mid.filter((v) => v.status === "running")).toHaveLength(1);
    expect(mid.filter((v) => v.status === "cancelled")).toHaveLength(2);
    await sleep(300);
    await runnerStops(seeded.id, runner);

    const res = await pending;
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({ status: "cancelled", previousStatus: "processing", cancelledVariations: 3 });
    expect(job.cancelledAt).toMatch(/Z$/);
  });

  it("answers 202 cancelling when the runner does not stop within 5 s, then 200 on a repeat once it has", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const started = Date.now();
    const res = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_900);
    expect(await res.json()).toMatchObject({ status: "cancelling", previousStatus: "processing" });
    expect((await variationsOf(seeded.id)).every((v) => v.status === "running")).toBe(true);

    await runnerStops(seeded.id, runner);
    const again = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: "cancelled", previousStatus: "cancelled" });
  });

  it("lets completed win when every variation finishes before the runner stops", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const pending = s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    // The cancel is recorded first (polled, not slept on), then the runner's completions race it and win.
    let row = await jobRow(seeded.id);
    for (let i = 0; i < 100 && row!.status !== "cancelling"; i++) {
      await sleep(50);
      row = await jobRow(seeded.id);
    }
    expect(row!.status).toBe("cancelling");
    await runnerFinishesAll(seeded.id, runner);
    const res = await pending;
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({ status: "completed", previousStatus: "processing", completedVariations: 2, cancelledAt: null });
    expect(job.downloadUrl).toBe(`/api/jobs/${seeded.id}/download`);
  });

  it("finalizes at once when cancelling leaves no running variation", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 1, variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner, Date.now(), 30_000, 1);
    await runnerFinishesAll(seeded.id, runner); // one completed, one still queued, job processing
    const started = Date.now();
    const res = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(await res.json()).toMatchObject({ status: "cancelled", completedVariations: 1, cancelledVariations: 1 });
  });

  it("is idempotent on a cancelled job and keeps the first reason", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id);
    await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", json: { reason: "first" } });
    const res = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", json: { reason: "second" } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "cancelled", previousStatus: "cancelled", cancelReason: "first" });
  });

  it("answers 409 not_cancellable with the job for completed and failed jobs", async () => {
    const s = await signIn();
    const done = await seedJob(s.id, { variations: 1 });
    await claimAll(done.id, "r-done");
    await runnerFinishesAll(done.id, "r-done");
    const res = await s.call(`/api/jobs/${done.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { code: string }; job: unknown };
    expect(body.error.code).toBe("not_cancellable");
    expect(Job.parse(body.job)).toMatchObject({ id: done.id, status: "completed", previousStatus: "completed" });

    const failed = await seedJob(s.id, { variations: 1 });
    await claimAll(failed.id, "r-failed");
    const [v] = await variationsOf(failed.id);
    const { failVariation } = await import("../../db/queries/variations");
    await failVariation(db, { attempt: 1, variationId: v!.id, runnerId: "r-failed", error: "boom", now: Date.now() });
    const res2 = await s.call(`/api/jobs/${failed.id}/cancel`, { method: "POST" });
    expect(res2.status).toBe(409);
    expect(await res2.json()).toMatchObject({ job: { status: "failed" } });
  });

  it("answers 404 for unknown jobs and other users' jobs, while an admin may cancel anyone's", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const admin = await signIn("admin");
    const seeded = await seedJob(alice.id);
    expect((await bob.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" })).status).toBe(404);
    expect((await alice.call(`/api/jobs/nope/cancel`, { method: "POST" })).status).toBe(404);
    expect((await jobRow(seeded.id))!.status).toBe("queued");
    const res = await admin.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect(await res.json()).toMatchObject({ status: "cancelled", cancelledBy: admin.email });
  });

  it("answers 400 for an over-long reason, 401 without a session or with the runner token, 403 cross-origin", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id);
    const long = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", json: { reason: "x".repeat(501) } });
    expect(long.status).toBe(400);
    expect(await long.json()).toMatchObject({ error: { field: "reason" } });
    expect((await call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" })).status).toBe(401);
    expect((await call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", token: env.RUNNER_TOKEN })).status).toBe(401);
    const csrf = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST", origin: "https://evil.example" });
    expect(csrf.status).toBe(403);
    expect((await jobRow(seeded.id))!.status).toBe("queued");
  });
});

describe("POST /api/jobs/cancel (bulk)", () => {
  it("cancels listed jobs and reports each one's outcome without waiting", async () => {
    const s = await signIn();
    const other = await signIn();
    const queued = await seedJob(s.id);
    const busy = await seedJob(s.id);
    await claimAll(busy.id, "r-bulk");
    const done = await seedJob(s.id, { variations: 1 });
    await claimAll(done.id, "r-bulk-done");
    await runnerFinishesAll(done.id, "r-bulk-done");
    const foreign = await seedJob(other.id);

    const res = await s.call("/api/jobs/cancel", {
      method: "POST",
      json: { ids: [queued.id, busy.id, done.id, foreign.id, "unknown"] },
    });
    expect(res.status).toBe(200);
    const { results } = BulkCancelResults.parse(await res.json());
    expect(results).toEqual([
      { id: queued.id, status: "cancelled", previousStatus: "queued" },
      { id: busy.id, status: "cancelling", previousStatus: "processing" },
      { id: done.id, status: "completed", previousStatus: "completed", error: "not_cancellable" },
      { id: foreign.id, status: null, previousStatus: null, error: "not_found" },
      { id: "unknown", status: null, previousStatus: null, error: "not_found" },
    ]);
    expect((await jobRow(foreign.id))!.status).toBe("queued");
  });

  it("cancels every queued job of the user with {status:\"queued\"}, leaving other users' alone", async () => {
    const s = await signIn();
    const other = await signIn();
    const a = await seedJob(s.id);
    const b = await seedJob(s.id);
    const busy = await seedJob(s.id);
    await claimAll(busy.id, "r-bulk-q");
    const foreign = await seedJob(other.id);
    const res = await s.call("/api/jobs/cancel", { method: "POST", json: { status: "queued" } });
    const { results } = BulkCancelResults.parse(await res.json());
    expect(results.map((r) => r.id).sort()).toEqual([a.id, b.id].sort());
    expect(results.every((r) => r.status === "cancelled" && r.previousStatus === "queued")).toBe(true);
    expect((await jobRow(busy.id))!.status).toBe("processing");
    expect((await jobRow(foreign.id))!.status).toBe("queued");
  });

  it("answers 400 for a body with neither ids nor status, 401 unauthenticated, 403 cross-origin", async () => {
    const s = await signIn();
    expect((await s.call("/api/jobs/cancel", { method: "POST", json: {} })).status).toBe(400);
    expect((await s.call("/api/jobs/cancel", { method: "POST", json: { status: "completed" } })).status).toBe(400);
    expect((await s.call("/api/jobs/cancel", { method: "POST", json: { ids: [] } })).status).toBe(400);
    expect((await call("/api/jobs/cancel", { method: "POST", json: { status: "queued" } })).status).toBe(401);
    expect(
      (await call("/api/jobs/cancel", { method: "POST", json: { status: "queued" }, token: env.RUNNER_TOKEN })).status,
    ).toBe(401);
    const csrf = await s.call("/api/jobs/cancel", { method: "POST", json: { status: "queued" }, origin: "https://evil.example" });
    expect(csrf.status).toBe(403);
  });
});
