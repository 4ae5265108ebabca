import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { setJobThumbnail } from "../../db/queries/media";
import { finishVariation } from "../../db/queries/variations";
import { call, claimAll, db, jobRow, runJob, sameBytes, seedJob, signIn, variationsOf } from "./helpers";

describe("GET /api/jobs/:id/outputs/:outputId", () => {
  it("serves the whole output and byte ranges for seeking", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 1 });
    const { outputs, vars } = await runJob(seeded.id);
    const id = vars[0]!.id;
    const bytes = outputs.get(id)!;

    const full = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`);
    expect(full.status).toBe(200);
    expect(full.headers.get("content-type")).toBe("video/mp4");
    expect(full.headers.get("accept-ranges")).toBe("bytes");
    expect(Number(full.headers.get("content-length"))).toBe(bytes.length);
    // Kept by the browser for previews (its own choice, not the API's no-store).
    expect(full.headers.get("cache-control")).toMatch(/^private, max-age=/);
    expect(sameBytes(new Uint8Array(await full.arrayBuffer()), bytes)).toBe(true);

    const part = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 10-19/${bytes.length}`);
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(bytes.subarray(10, 20));

    const tail = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: "bytes=-5" } });
    expect(tail.status).toBe(206);
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 5));

    const open = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: `bytes=${bytes.length - 3}-` } });
    expect(new Uint8Array(await open.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 3));

    const beyond = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: `bytes=${bytes.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe(`bytes */${bytes.length}`);
  });

  it("explains a range outside an output video as a JSON error naming the video's size", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 1 });
    const { outputs, vars } = await runJob(seeded.id);
    const id = vars[0]!.id;
    const size = outputs.get(id)!.length;

    const res = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: "bytes=999999999-" } });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("content-disposition")).toBeNull();
    expect(res.headers.get("content-range")).toBe(`bytes */${size}`);
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("range_not_satisfiable");
    expect(body.error.message).toContain(`${size} bytes`);
  });

  it("answers 404 for an unknown output, another user's job or an output of another job", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const a = await seedJob(alice.id, { variations: 1 });
    const { vars } = await runJob(a.id);
    const b = await seedJob(alice.id, { variations: 1 });
    expect((await alice.call(`/api/jobs/${a.id}/outputs/nope`)).status).toBe(404);
    expect((await bob.call(`/api/jobs/${a.id}/outputs/${vars[0]!.id}`)).status).toBe(404);
    expect((await alice.call(`/api/jobs/${b.id}/outputs/${vars[0]!.id}`)).status).toBe(404);
    expect((await call(`/api/jobs/${a.id}/outputs/${vars[0]!.id}`)).status).toBe(401);
    expect((await call(`/api/jobs/${a.id}/outputs/${vars[0]!.id}`, { token: env.RUNNER_TOKEN })).status).toBe(401);
  });
});

describe("GET /api/jobs/:id/thumbnail", () => {
  it("serves the thumbnail the runner recorded, and 404 before there is one", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id);
    expect((await s.call(`/api/jobs/${seeded.id}/thumbnail`)).status).toBe(404);
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);
    const key = `thumbs/${seeded.id}.jpg`;
    await env.BUCKET.put(key, jpeg, { httpMetadata: { contentType: "image/jpeg" } });
    await setJobThumbnail(db, seeded.id, key, Date.now());
    const res = await s.call(`/api/jobs/${seeded.id}/thumbnail`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/jpeg");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(jpeg);
    expect(await (await s.call(`/api/jobs/${seeded.id}`)).json()).toMatchObject({ thumbnailUrl: `/api/jobs/${seeded.id}/thumbnail` });
    const other = await signIn();
    expect((await other.call(`/api/jobs/${seeded.id}/thumbnail`)).status).toBe(404);
    expect((await call(`/api/jobs/${seeded.id}/thumbnail`)).status).toBe(401);
    expect((await call(`/api/jobs/${seeded.id}/thumbnail`, { token: env.RUNNER_TOKEN })).status).toBe(401);
  });
});

describe("GET /api/jobs/:id/outputs/:outputId/thumbnail", () => {
  it("serves the still the runner recorded for a completed variation, owner-checked; 404 without one", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const [v1, v2] = await variationsOf(seeded.id);
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 9, 8, 7, 0xff, 0xd9]);
    const thumb = `outputs/${seeded.id}/${v1!.id}.a1.jpg`;
    await env.BUCKET.put(thumb, jpeg);
    const quality = { seed: v1!.seed, params: {}, ssim: 0.95, psnr: 30, distinct: null, fingerprint: null, thumbnailKey: thumb, redrawReason: null };
    await finishVariation(db, { attempt: 1, variationId: v1!.id, runnerId: runner, outputKey: `outputs/${seeded.id}/${v1!.id}.a1.mp4`, outputSize: 9, now: Date.now(), quality });
    await finishVariation(db, { attempt: 1, variationId: v2!.id, runnerId: runner, outputKey: `outputs/${seeded.id}/${v2!.id}.a1.mp4`, outputSize: 9, now: Date.now() });

    const job = (await (await s.call(`/api/jobs/${seeded.id}`)).json()) as { files: { variations: { outputId: string; thumbnailUrl: string | null }[] }[] };
    const [a, b] = job.files[0]!.variations;
    expect(a!.thumbnailUrl).toBe(`/api/jobs/${seeded.id}/outputs/${v1!.id}/thumbnail`);
    expect(b!.thumbnailUrl).toBeNull();
    const res = await s.call(a!.thumbnailUrl!);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/jpeg");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(jpeg);
    const none = await s.call(`/api/jobs/${seeded.id}/outputs/${v2!.id}/thumbnail`);
    expect(none.status).toBe(404);
    expect(await none.json()).toMatchObject({ error: { code: "no_thumbnail" } });
    const other = await signIn();
    expect((await other.call(a!.thumbnailUrl!)).status).toBe(404);
    expect((await call(a!.thumbnailUrl!)).status).toBe(401);
    expect((await call(a!.thumbnailUrl!, { token: env.RUNNER_TOKEN })).status).toBe(401);

    // Deleting the job deletes the recorded still with the rest.
    await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect((await s.call(`/api/jobs/${seeded.id}`, { method: "DELETE" })).status).toBe(204);
    expect(await env.BUCKET.get(thumb)).toBeNull();
  });
});

describe("DELETE /api/jobs/:id", () => {
  it("removes a finished job's objects (sources, outputs, thumbnail, strays) and rows", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 2 });
    await runJob(seeded.id);
    await env.BUCKET.put(`thumbs/${seeded.id}.jpg`, "jpg");
    await setJobThumbnail(db, seeded.id, `thumbs/${seeded.id}.jpg`, Date.now());
    await env.BUCKET.put(`outputs/${seeded.id}/stray.mp4`, "late upload");
    const res = await s.call(`/api/jobs/${seeded.id}`, { method: "DELETE" });
    expect(res.status).toBe(204);
    for (const prefix of [`sources/${seeded.id}/`, `outputs/${seeded.id}/`, `thumbs/${seeded.id}`]) {
      expect((await env.BUCKET.list({ prefix })).objects, prefix).toEqual([]);
    }
    expect(await jobRow(seeded.id)).toBeUndefined();
    expect(await variationsOf(seeded.id)).toEqual([]);
    expect((await s.call(`/api/jobs/${seeded.id}`)).status).toBe(404);
  });

  it("answers 409 job_active for queued and processing jobs and keeps them", async () => {
    const s = await signIn();
    const queued = await seedJob(s.id);
    const res = await s.call(`/api/jobs/${queued.id}`, { method: "DELETE" });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "job_active" } });
    const busy = await seedJob(s.id);
    await claimAll(busy.id, "r-del");
    expect((await s.call(`/api/jobs/${busy.id}`, { method: "DELETE" })).status).toBe(409);
    expect((await env.BUCKET.list({ prefix: `sources/${busy.id}/` })).objects).toHaveLength(1);
  });

  it("answers 404 for another user's job, 401 unauthenticated or with the runner token, 403 cross-origin", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const seeded = await seedJob(alice.id);
    await alice.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect((await bob.call(`/api/jobs/${seeded.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await call(`/api/jobs/${seeded.id}`, { method: "DELETE" })).status).toBe(401);
    expect((await call(`/api/jobs/${seeded.id}`, { method: "DELETE", token: env.RUNNER_TOKEN })).status).toBe(401);
    expect((await alice.call(`/api/jobs/${seeded.id}`, { method: "DELETE", origin: "https://evil.example" })).status).toBe(403);
    expect(await jobRow(seeded.id)).toBeDefined();
  });
});
