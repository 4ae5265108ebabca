import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { DEFAULT_EFFECTS } from "../../db/effects";
import { jobs, uploads } from "../../db/schema";
import { Job } from "../../edge/lib/schemas";
import { db, fakeMp4, formBody, jobRow, signIn, type Session } from "./helpers";

async function postForm(s: Session, parts: Parameters<typeof formBody>[0]) {
  const { body, contentType } = formBody(parts);
  return s.call("/api/jobs", { method: "POST", body, headers: { "content-type": contentType } });
}

/** A completed large-file upload, ready to feed a JSON job. */
async function completedUpload(s: Session): Promise<string> {
  const bytes = fakeMp4(2000, 5);
  const created = await s.call("/api/uploads", { method: "POST", json: { filename: "clip.mp4", size: bytes.length } });
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as { id: string };
  const part = await s.call(`/api/uploads/${id}/parts/1`, {
    method: "PUT",
    body: bytes,
    headers: { "content-type": "application/octet-stream" },
  });
  expect(part.status).toBe(200);
  expect((await s.call(`/api/uploads/${id}/complete`, { method: "POST" })).status).toBe(200);
  return id;
}

async function allSourceKeys(): Promise<string[]> {
  return (await env.BUCKET.list({ prefix: "sources/" })).objects.map((o) => o.key).sort();
}

async function jobsOf(userId: string) {
  return db.select({ id: jobs.id }).from(jobs).where(eq(jobs.userId, userId));
}

const INVALID: [string, unknown][] = [
  ["an unknown family", { intensity: "subtle", families: ["color", "sparkles"] }],
  ["an empty family list", { intensity: "medium", families: [] }],
  ["a bad intensity", { intensity: "extreme", families: ["color"] }],
  ["an unknown key", { intensity: "subtle", families: ["zoom"], colour: true }],
  ["a family list that is not a list", { families: "color" }],
];

describe("POST /api/jobs effects", () => {
  it("stores the effects of a JSON job (families in recipe order, once each) and returns them on the job", async () => {
    const s = await signIn();
    const upload = await completedUpload(s);
    const res = await s.call("/api/jobs", {
      method: "POST",
      json: { uploads: [upload], variations: 1, effects: { intensity: "strong", families: ["audio", "mirror", "rotate", "mirror"] } },
    });
    expect(res.status).toBe(202);
    const created = Job.parse(await res.json());
    const want = { intensity: "strong", families: ["rotate", "mirror", "audio"] };
    expect(created.effects).toEqual(want);
    expect(JSON.parse((await jobRow(created.id))!.effects)).toEqual(want);
    const read = Job.parse(await (await s.call(`/api/jobs/${created.id}`)).json());
    expect(read.effects).toEqual(want);
  });

  it("stores the effects of a multipart job sent as a JSON field, before or after the videos", async () => {
    const s = await signIn();
    const before = await postForm(s, [
      { name: "effects", value: JSON.stringify({ intensity: "medium", families: ["speed", "noise"] }) },
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(500) },
    ]);
    expect(before.status).toBe(202);
    expect(await before.json()).toMatchObject({ effects: { intensity: "medium", families: ["speed", "noise"] } });
    const after = await postForm(s, [
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(500) },
      { name: "effects", value: JSON.stringify({ families: ["mirror"] }) },
    ]);
    expect(after.status).toBe(202);
    const job = Job.parse(await after.json());
    // A missing intensity takes the default's.
    expect(job.effects).toEqual({ intensity: "subtle", families: ["mirror"] });
    expect(Job.parse(await (await s.call(`/api/jobs/${job.id}`)).json()).effects).toEqual(job.effects);
  });

  it("gives a job without effects today's look: subtle color + zoom", async () => {
    const s = await signIn();
    const form = await postForm(s, [{ name: "videos", filename: "a.mp4", bytes: fakeMp4(500) }]);
    expect(form.status).toBe(202);
    expect(Job.parse(await form.json()).effects).toEqual(DEFAULT_EFFECTS);
    const upload = await completedUpload(s);
    const json = await s.call("/api/jobs", { method: "POST", json: { uploads: [upload] } });
    expect(json.status).toBe(202);
    expect(Job.parse(await json.json()).effects).toEqual({ intensity: "subtle", families: ["color", "zoom"] });
  });

  for (const [what, effects] of INVALID) {
    it(`refuses ${what} with 400 naming effects and creates nothing (JSON and multipart)`, async () => {
      const s = await signIn();
      const upload = await completedUpload(s);
      const keysBefore = await allSourceKeys();
      const json = await s.call("/api/jobs", { method: "POST", json: { uploads: [upload], effects } });
      expect(json.status).toBe(400);
      expect(await json.json()).toMatchObject({ error: { code: "invalid_request", field: expect.stringMatching(/^effects/) } });
      const [up] = await db.select().from(uploads).where(eq(uploads.id, upload));
      expect(up!.status).toBe("completed");

      for (const order of ["first", "last"] as const) {
        const field = { name: "effects", value: JSON.stringify(effects) };
        const video = { name: "videos", filename: "a.mp4", bytes: fakeMp4(500) };
        const form = await postForm(s, order === "first" ? [field, video] : [video, field]);
        expect(form.status).toBe(400);
        expect(await form.json()).toMatchObject({ error: { code: "invalid_request", field: expect.stringMatching(/^effects/) } });
      }
      expect(await jobsOf(s.id)).toEqual([]);
      // A video stored before the bad field arrived is deleted again.
      expect(await allSourceKeys()).toEqual(keysBefore);
    });
  }

  it("refuses an effects field that is not JSON with 400 and creates nothing", async () => {
    const s = await signIn();
    const res = await postForm(s, [
      { name: "effects", value: "{intensity: subtle" },
      { name: "videos", filename: "a.mp4", bytes: fakeMp4(500) },
    ]);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { field: "effects", message: "effects: malformed JSON" } });
    expect(await jobsOf(s.id)).toEqual([]);
  });
});
