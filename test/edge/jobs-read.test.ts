import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { finishVariation, failVariation } from "../../db/queries/variations";
import { Job, JobList } from "../../edge/lib/schemas";
import { call, claimAll, db, seedJob, signIn, variationsOf } from "./helpers";

describe("GET /api/jobs/:id", () => {
  it("returns the Job shape with files, variations, counts, progress and ISO-8601 UTC times", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const [v1, v2] = (await variationsOf(seeded.id)).filter((v) => v.sourceId === seeded.files[0]!.id).map((v) => v.id);
    await finishVariation(db, { attempt: 1,
      variationId: v1!,
      runnerId: runner,
      outputKey: `outputs/${seeded.id}/${v1}.mp4`,
      outputSize: 1234,
      now: Date.now(),
      quality: {
        seed: 77,
        params: { recipe: 1, zoom: 0.005 },
        ssim: 0.9512,
        psnr: 31.4,
        distinct: 2.25,
        fingerprint: "AAAA",
        thumbnailKey: `outputs/${seeded.id}/${v1}.a1.jpg`,
        redrawReason: "SSIM 0.500 below the floor 0.6",
      },
    });
    await failVariation(db, { attempt: 1, variationId: v2!, runnerId: runner, error: "encoder exploded", now: Date.now() });

    const res = await s.call(`/api/jobs/${seeded.id}`);
    expect(res.status).toBe(200);
    const job = Job.parse(await res.json());
    expect(job).toMatchObject({
      id: seeded.id,
      status: "processing",
      totalVariations: 4,
      completedVariations: 1,
      failedVariations: 1,
      cancelledVariations: 0,
      progress: 50,
      downloadUrl: null,
      thumbnailUrl: null,
      expiresAt: null,
      // Processing: no place in the queue any more (the ETA depends on the runners online, tested in db/).
      queuePosition: null,
    });
    expect(job.etaSeconds === null || Number.isInteger(job.etaSeconds)).toBe(true);
    expect(job.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(job.startedAt).toMatch(/Z$/);
    const [first, second] = job.files;
    // Every variation of the first file is finished (one completed, one failed): the file is done.
    expect(first).toMatchObject({ name: "clip1.mp4", status: "completed", completedVariations: 1, progress: 100 });
    expect(second).toMatchObject({ name: "clip2.mp4", status: "processing", completedVariations: 0, progress: 0 }); // running
    const done = first!.variations!.find((v) => v.status === "completed")!;
    expect(done).toMatchObject({ progress: 100, outputId: v1, outputSize: 1234, error: null });
    // The runner's figures, the kept draw's params, the re-draw record and the variation's still; never the fingerprint.
    expect(done).toMatchObject({
      params: { recipe: 1, zoom: 0.005 },
      quality: { ssim: 0.9512, psnr: 31.4, distinct: 2.25 },
      redraws: 0,
      redrawReason: "SSIM 0.500 below the floor 0.6",
      thumbnailUrl: `/api/jobs/${seeded.id}/outputs/${v1}/thumbnail`,
    });
    expect(JSON.stringify(job)).not.toContain("fingerprint");
    const failed = first!.variations!.find((v) => v.status === "failed")!;
    expect(failed).toMatchObject({ outputId: null, error: "encoder exploded", thumbnailUrl: null });
    // Null until measured.
    expect(failed.quality).toEqual({ ssim: null, psnr: null, distinct: null });
  });

  it("answers 404 for another user's job and for an unknown id, but admins see every job", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const admin = await signIn("admin");
    const job = await seedJob(alice.id);
    expect((await bob.call(`/api/jobs/${job.id}`)).status).toBe(404);
    expect((await alice.call(`/api/jobs/doesnotexist`)).status).toBe(404);
    expect((await admin.call(`/api/jobs/${job.id}`)).status).toBe(200);
  });

  it("answers 401 without a session and with the runner token", async () => {
    const alice = await signIn();
    const job = await seedJob(alice.id);
    expect((await call(`/api/jobs/${job.id}`)).status).toBe(401);
    expect((await call(`/api/jobs/${job.id}`, { token: env.RUNNER_TOKEN })).status).toBe(401);
  });
});

describe("GET /api/jobs", () => {
  it("lists the user's jobs newest first with cursor pagination and no variation arrays", async () => {
    const s = await signIn();
    const base = Date.now() - 10_000;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await seedJob(s.id, { now: base + i * 1000 })).id);
    const other = await signIn();
    await seedJob(other.id);

    const page1 = JobList.parse(await (await s.call("/api/jobs?limit=2")).json());
    expect(page1.jobs.map((j) => j.id)).toEqual([ids[4], ids[3]]);
    expect(page1.jobs[0]!.files[0]!.variations).toBeUndefined();
    expect(page1.nextCursor).toBeTruthy();
    const page2 = JobList.parse(await (await s.call(`/api/jobs?limit=2&cursor=${page1.nextCursor}`)).json());
    expect(page2.jobs.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    const page3 = JobList.parse(await (await s.call(`/api/jobs?limit=2&cursor=${page2.nextCursor}`)).json());
    expect(page3.jobs.map((j) => j.id)).toEqual([ids[0]]);
    expect(page3.nextCursor).toBeNull();
  });

  it("filters by status and reports per-file counts in the list", async () => {
    const s = await signIn();
    const queued = await seedJob(s.id);
    const busy = await seedJob(s.id, { variations: 3 });
    const [v1] = await claimAll(busy.id, "r-list");
    await finishVariation(db, { attempt: 1,
      variationId: v1!,
      runnerId: "r-list",
      outputKey: `outputs/${busy.id}/${v1}.mp4`,
      outputSize: 10,
      now: Date.now(),
    });
    const res = JobList.parse(await (await s.call("/api/jobs?status=processing")).json());
    expect(res.jobs.map((j) => j.id)).toEqual([busy.id]);
    expect(res.jobs[0]).toMatchObject({ completedVariations: 1, totalVariations: 3 });
    expect(res.jobs[0]!.files[0]).toMatchObject({ completedVariations: 1, status: "processing" });
    const q = JobList.parse(await (await s.call("/api/jobs?status=queued")).json());
    expect(q.jobs.map((j) => j.id)).toEqual([queued.id]);
  });

  it("shows admins every user's jobs", async () => {
    const alice = await signIn();
    const job = await seedJob(alice.id);
    const admin = await signIn("admin");
    const res = JobList.parse(await (await admin.call("/api/jobs?limit=100")).json());
    expect(res.jobs.some((j) => j.id === job.id)).toBe(true);
  });

  it("answers 400 naming the field for a bad status, limit or cursor", async () => {
    const s = await signIn();
    expect(await (await s.call("/api/jobs?status=done")).json()).toMatchObject({ error: { field: "status" } });
    expect(await (await s.call("/api/jobs?limit=0")).json()).toMatchObject({ error: { field: "limit" } });
    expect(await (await s.call("/api/jobs?limit=101")).json()).toMatchObject({ error: { field: "limit" } });
    const bad = await s.call("/api/jobs?cursor=%%%");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { field: "cursor" } });
  });

  it("answers 401 without a session and with the runner token", async () => {
    expect((await call("/api/jobs")).status).toBe(401);
    expect((await call("/api/jobs", { token: env.RUNNER_TOKEN })).status).toBe(401);
  });
});
