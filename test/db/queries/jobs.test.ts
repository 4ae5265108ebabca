import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { newId } from "../../../db/ids";
import { cancelJobs, createJob, getJob, listJobs, requestCancel } from "../../../db/queries/jobs";
import { claimVariation } from "../../../db/queries/variations";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, getJobRow, getVariationRows } from "../../helpers/seed";

const server = useTestLibsql();

async function owner(db: Db) {
  const u = await createUser(db, { email: `q-${newId()}@test.example`, password: "pw-for-queries", role: "user" });
  return { id: u.id, email: u.email, role: u.role };
}

async function newJob(db: Db, userId: string, files = 2, perFile = 10, now = Date.now()) {
  const id = newId();
  return createJob(
    db,
    {
      id,
      userId,
      variationsPerVideo: perFile,
      retentionMs: 3_600_000,
      sources: Array.from({ length: files }, (_, i) => ({
        id: newId(),
        name: `f${i}.mp4`,
        size: 10,
        contentType: "video/mp4",
        objectKey: `sources/${id}/${i}`,
      })),
    },
    now,
  );
}

describe("createJob", () => {
  it("creates one queued variation per (file, position) with seeds distinct within the job", async () => {
    const { db } = await freshDb(server, "jobs_create");
    const user = await owner(db);
    const job = await newJob(db, user.id, 10, 20);
    const rows = await getVariationRows(db, job.id);
    expect(rows).toHaveLength(200);
    expect(new Set(rows.map((r) => r.seed)).size).toBe(200);
    expect(rows.every((r) => r.status === "queued" && Number.isInteger(r.seed) && r.seed > 0 && r.seed < 2 ** 31)).toBe(true);
    expect(new Set(rows.map((r) => `${r.sourceId}:${r.position}`)).size).toBe(200);
  });
});

describe("requestCancel against concurrent claims", () => {
  it("never leaves a job cancelled with a running variation, nor cancelling with a queued one", async () => {
    const { db } = await freshDb(server, "jobs_race");
    const user = await owner(db);
    for (let round = 0; round < 8; round++) {
      const job = await newJob(db, user.id, 1, 6);
      // Two runners claim while the user cancels; the database orders the compare-and-sets.
      const claims = Array.from({ length: 4 }, (_, i) =>
        claimVariation(db, { runnerId: `r${i}`, leaseMs: 60_000, now: Date.now() }),
      );
      const [cancel] = await Promise.all([requestCancel(db, { jobId: job.id, viewer: user }, Date.now()), ...claims]);
      const row = (await getJobRow(db, job.id))!;
      const vars = await getVariationRows(db, job.id);
      const running = vars.filter((v) => v.status === "running").length;
      const queued = vars.filter((v) => v.status === "queued").length;
      expect(queued, `round ${round}`).toBe(0);
      if (row.status === "cancelled") expect(running).toBe(0);
      else expect([row.status, running > 0]).toEqual(["cancelling", true]);
      expect(cancel.kind).toBe("requested");
      if (cancel.kind !== "not_found") expect(cancel.job.previousStatus).toMatch(/^(queued|processing)$/);
      // Nothing new is handed out once the cancel is recorded.
      expect(await claimVariation(db, { runnerId: "late", leaseMs: 60_000, now: Date.now() })).toBeNull();
    }
  });

  it("lets two simultaneous cancels agree: one sees queued, the other the cancelled job", async () => {
    const { db } = await freshDb(server, "jobs_twice");
    const user = await owner(db);
    const job = await newJob(db, user.id, 1, 2);
    const [a, b] = await Promise.all([
      requestCancel(db, { jobId: job.id, viewer: user, reason: "a" }, Date.now()),
      requestCancel(db, { jobId: job.id, viewer: user, reason: "b" }, Date.now()),
    ]);
    if (a.kind === "not_found" || b.kind === "not_found") return expect.fail("job not found");
    expect([a.job.previousStatus, b.job.previousStatus].sort()).toEqual(["cancelled", "queued"]);
    expect(a.job.status).toBe("cancelled");
    expect(b.job.status).toBe("cancelled");
    expect(a.job.cancelReason).toBe(b.job.cancelReason);
  });
});

describe("listJobs and getJob", () => {
  it("pages through equal creation times without skipping or repeating a job", async () => {
    const { db } = await freshDb(server, "jobs_page");
    const user = await owner(db);
    const now = Date.now();
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) ids.add((await newJob(db, user.id, 1, 1, now)).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await listJobs(db, { viewer: user, limit: 3, cursor }, now);
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toHaveLength(7);
    expect(new Set(seen)).toEqual(ids);
  });

  it("treats another user's job as missing and lets admins read it", async () => {
    const { db } = await freshDb(server, "jobs_owner");
    const alice = await owner(db);
    const bob = await owner(db);
    const job = await newJob(db, alice.id, 1, 1);
    await expect(getJob(db, { jobId: job.id, viewer: bob }, Date.now())).rejects.toMatchObject({ status: 404 });
    await expect(getJob(db, { jobId: job.id, viewer: { ...bob, role: "admin" } }, Date.now())).resolves.toMatchObject({ id: job.id });
    expect(await cancelJobs(db, { viewer: bob, ids: [job.id] }, Date.now())).toEqual([
      { id: job.id, status: null, previousStatus: null, error: "not_found" },
    ]);
  });
});
