import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../../db/client";
import { MULTIPART_ABANDON_MS, type UserLimits } from "../../db/limits";
import { recordMultipartUpload } from "../../db/queries/multiparts";
import { abortAbandonedMultiparts } from "../../edge/lifecycle/abandoned-multiparts";
import { newId } from "../../db/ids";
import { thumbnailKey, variationThumbnailKey } from "../../db/keys";
import { ACCOUNT_DISABLED_REASON, EXPIRED_WHILE_QUEUED, listExpiredJobIds } from "../../db/queries/lifecycle";
import { addVariations, createJobFromUploads, pauseJob, resumeJob, retryJob } from "../../db/queries/jobs";
import { deleteFinishedJobRows } from "../../db/queries/objects";
import { upsertRunner } from "../../db/queries/runners";
import { createSession } from "../../db/queries/sessions";
import { markUploadCompleted, recordUploadPart } from "../../db/queries/uploads";
import { createUser, setUserDisabled } from "../../db/queries/users";
import { jobs, loginFailures, multipartUploads, runners, sessions, uploadParts, uploads, variations } from "../../db/schema";
import { loadConfig } from "../../edge/env";
import { runLifecycle, type LifecycleDeps } from "../../edge/lifecycle";
import { EXPIRE_BATCH, expireFinishedJobs } from "../../edge/lifecycle/expire-jobs";
import { failStaleQueued } from "../../edge/lifecycle/fail-stale-queued";
import { finalizeIdleJobs } from "../../edge/lifecycle/finalize-idle";
import { endDisabledAccountsWork } from "../../edge/lifecycle/disabled-accounts";
import { deleteOrphanObjects } from "../../edge/lifecycle/orphan-objects";
import { pruneAuth } from "../../edge/lifecycle/prune-auth";
import { recoverLeases } from "../../edge/lifecycle/recover-leases";
import { abortStaleUploads } from "../../edge/lifecycle/stale-uploads";
import { enforceStorageCap } from "../../edge/lifecycle/storage-cap";
import { purgeJob } from "../../edge/lib/storage";
import { dropUnusedUpload, startUpload } from "../../edge/lib/uploads";
import worker from "../../edge/index";
import { interceptStatements } from "../helpers/statements";
import { claimAll, fakeMp4, isolatedDatabase, isolatedDb, jobRow, seedJob, variationsOf } from "./helpers";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
/** Per-user limits no test here comes near (the quota tests set their own). */
const ROOMY: UserLimits = { storageBytes: 1e12, activeJobs: 1000, queuedVariations: 1e6, openUploads: 1000, unusedUploads: 1000 };
/** A fixed "now" for every rule (the rules never read the clock themselves). */
const NOW = Date.UTC(2030, 0, 15, 12, 0, 0);

// Each test gets a database of its own, since the rules act on every row (R2 storage is per test file here, and a
// file's tests run one after another).
let db: Db;
let userId: string;
const deps = (overrides: Partial<LifecycleDeps["config"]> = {}): LifecycleDeps => ({
  db,
  bucket: env.BUCKET,
  config: { ...loadConfig(env), ...overrides },
});

beforeEach(async () => {
  db = await isolatedDb();
  userId = (await createUser(db, { email: `lc-${newId()}@test.example`, password: "pw-for-lifecycle", role: "user" })).id;
});

/**
 * Records a claimed job as completed at `finishedAt` with one stored output per variation, written straight into
 * the rows (these tests are about what the rules do with finished jobs, not about how runners settle).
 */
async function complete(jobId: string, finishedAt: number, outputBytes: number) {
  for (const v of await variationsOf(jobId, db)) {
    const key = `outputs/${jobId}/${v.id}.a1.mp4`;
    await env.BUCKET.put(key, fakeMp4(outputBytes));
    await db
      .update(variations)
      .set({ status: "completed", progress: 100, outputKey: key, outputSize: outputBytes, finishedAt, leaseExpiresAt: null })
      .where(eq(variations.id, v.id));
  }
  await db
    .update(jobs)
    .set({ status: "completed", completedAt: finishedAt, expiresAt: finishedAt + DAY, updatedAt: finishedAt })
    .where(eq(jobs.id, jobId));
}

/** A job run to completion at `finishedAt` with one stored output per variation. */
async function finishedJob(finishedAt: number, opts: { variations?: number; outputBytes?: number; owner?: string } = {}) {
  const job = await seedJob(opts.owner ?? userId, { db, variations: opts.variations ?? 1, now: finishedAt - HOUR });
  await claimAll(job.id, `r-${job.id}`, finishedAt - HOUR, 30_000, 1000, db);
  await complete(job.id, finishedAt, opts.outputBytes ?? 200);
  return job;
}

/** The test bucket, with every delete taking `ms` longer: R2 (or the database behind a rule) answering slowly. */
function slowDeletes(ms: number): R2Bucket {
  return new Proxy(env.BUCKET, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (typeof value !== "function") return value;
      if (prop !== "delete") return value.bind(target);
      return async (...args: unknown[]) => {
        await new Promise((r) => setTimeout(r, ms));
        return value.apply(target, args);
      };
    },
  });
}

async function keysUnder(prefix: string): Promise<string[]> {
  return (await env.BUCKET.list({ prefix })).objects.map((o) => o.key);
}

describe("expireFinishedJobs", () => {
  it("deletes objects then rows of finished jobs (incl. cancelled) past their expiry, and nothing else", async () => {
    const old = await finishedJob(NOW - DAY - HOUR);
    const fresh = await finishedJob(NOW - HOUR);
    const cancelled = await seedJob(userId, { db, now: NOW - 2 * DAY });
    await db
      .update(jobs)
      .set({ status: "cancelled", cancelledAt: NOW - 2 * DAY, completedAt: NOW - 2 * DAY, expiresAt: NOW - DAY })
      .where(eq(jobs.id, cancelled.id));
    const queued = await seedJob(userId, { db, now: NOW - 2 * DAY });

    expect(await expireFinishedJobs(deps(), NOW)).toEqual({ expired: 2 });
    expect(await jobRow(old.id, db)).toBeUndefined();
    expect(await jobRow(cancelled.id, db)).toBeUndefined();
    expect(await keysUnder(`outputs/${old.id}/`)).toEqual([]);
    expect(await keysUnder(`sources/${old.id}/`)).toEqual([]);
    expect(await keysUnder(`sources/${cancelled.id}/`)).toEqual([]);
    expect(await jobRow(fresh.id, db)).toBeDefined();
    expect(await keysUnder(`outputs/${fresh.id}/`)).toHaveLength(1);
    expect(await jobRow(queued.id, db)).toBeDefined();
  });

  it("catches up with a backlog in one run: every job past its expiry goes, not one batch of them", async () => {
    const expired = await Promise.all(Array.from({ length: EXPIRE_BATCH * 2 + 5 }, () => finishedJob(NOW - DAY - HOUR)));
    // No time budget here: what is tested is that a run goes on past one batch, not how fast this machine is.
    expect(await expireFinishedJobs(deps(), NOW, Infinity)).toEqual({ expired: expired.length });
    expect(await db.select({ id: jobs.id }).from(jobs)).toEqual([]);
  });

  it("takes every user's oldest expired job before anyone's second, so one user's backlog does not hold others' storage", async () => {
    const other = (await createUser(db, { email: `lc-v-${newId()}@test.example`, password: "pw-for-lifecycle", role: "user" })).id;
    // The backlog's jobs expired first; the other user's job an hour after them.
    for (let i = 0; i < 3; i++) await finishedJob(NOW - DAY - 3 * HOUR + i);
    const victims = await finishedJob(NOW - DAY - HOUR, { owner: other });
    expect(await listExpiredJobIds(db, NOW, 2)).toContain(victims.id);
  });

  it("stops at its time budget between two jobs, not after a whole batch, when R2 answers slowly", async () => {
    const expired = await Promise.all(Array.from({ length: 3 }, () => finishedJob(NOW - DAY - HOUR)));
    // Each purge takes at least 150 ms: past the 100 ms budget after the first job. Before, the budget was checked
    // only after a batch of 50 purges, which a slow database or bucket stretched to minutes.
    expect(await expireFinishedJobs({ ...deps(), bucket: slowDeletes(150) }, NOW, 100)).toEqual({ expired: 1 });
    expect(await db.select({ id: jobs.id }).from(jobs)).toHaveLength(expired.length - 1);
    // The next tick takes the rest.
    expect(await expireFinishedJobs(deps(), NOW, Infinity)).toEqual({ expired: 2 });
  });

  it("keeps the rows when deleting the objects fails, so the next tick can retry", async () => {
    const job = await finishedJob(NOW - 3 * DAY);
    const failing = { ...env.BUCKET, list: env.BUCKET.list.bind(env.BUCKET), delete: async () => { throw new Error("R2 down"); } } as unknown as R2Bucket;
    await expect(expireFinishedJobs({ ...deps(), bucket: failing }, NOW)).rejects.toThrow("R2 down");
    expect(await jobRow(job.id, db)).toBeDefined();
    await expireFinishedJobs(deps(), NOW);
    expect(await jobRow(job.id, db)).toBeUndefined();
  });
});

describe("failStaleQueued", () => {
  it("fails jobs queued longer than JOB_TTL_HOURS with \"expired while queued\", variations included", async () => {
    const stale = await seedJob(userId, { db, variations: 2, now: NOW - 25 * HOUR });
    const recent = await seedJob(userId, { db, now: NOW - 2 * HOUR });
    const busy = await seedJob(userId, { db, now: NOW - 30 * HOUR });
    await claimAll(busy.id, "r-busy", NOW - 29 * HOUR, 30 * DAY, 1000, db);

    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW)).toEqual({ failed: 1 });
    const row = await jobRow(stale.id, db);
    expect(row).toMatchObject({ status: "failed", error: EXPIRED_WHILE_QUEUED, completedAt: NOW, expiresAt: NOW + DAY });
    expect((await variationsOf(stale.id, db)).map((v) => [v.status, v.error])).toEqual([
      ["failed", EXPIRED_WHILE_QUEUED],
      ["failed", EXPIRED_WHILE_QUEUED],
    ]);
    expect((await jobRow(recent.id, db))!.status).toBe("queued");
    expect((await jobRow(busy.id, db))!.status).toBe("processing");
  });

  it("counts a reopened job's wait from its reopening: a retried expired job and a job resumed a day after its pause stay queued", async () => {
    const viewer = { id: userId, email: "owner@test.example", role: "user" as const };
    const expired = await seedJob(userId, { db, now: NOW - 25 * HOUR });
    const paused = await seedJob(userId, { db, now: NOW - 25 * HOUR });
    await pauseJob(db, { jobId: paused.id, viewer }, NOW - 24.5 * HOUR);
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW)).toEqual({ failed: 1 });

    await retryJob(db, { jobId: expired.id, viewer, limits: ROOMY }, NOW + 1000);
    await resumeJob(db, { jobId: paused.id, viewer, limits: ROOMY }, NOW + 1000);
    // The next tick, and the last one before a day of waiting since the reopening, leave both queued.
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW + 60_000)).toEqual({ failed: 0 });
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW + DAY)).toEqual({ failed: 0 });
    expect((await jobRow(expired.id, db))!.status).toBe("queued");
    expect((await jobRow(paused.id, db))!.status).toBe("queued");
    // A day after the reopening they have waited as long as any new job may.
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW + DAY + 2000)).toEqual({ failed: 2 });
  });
});

describe("a disabled account's held jobs", () => {
  let adminId: string;
  beforeEach(async () => {
    adminId = (await createUser(db, { email: `lc-admin-${newId()}@test.example`, password: "pw-for-lifecycle", role: "admin" })).id;
  });
  const setDisabled = (disabled: boolean, now: number) => setUserDisabled(db, { actorId: adminId, userId, disabled }, now);

  it("do not expire while queued as long as it is disabled, and wait afresh from its re-enabling", async () => {
    const held = await seedJob(userId, { db, now: NOW - 25 * HOUR });
    await setDisabled(true, NOW - 24.5 * HOUR);
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW)).toEqual({ failed: 0 });
    await setDisabled(false, NOW + 1000);
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW + DAY)).toEqual({ failed: 0 });
    expect((await jobRow(held.id, db))!.status).toBe("queued");
    expect(await failStaleQueued(deps({ JOB_TTL_HOURS: 24 }), NOW + DAY + 2000)).toEqual({ failed: 1 });
  });

  it("end cancelled a week after the disable, keeping what completed, so they expire like any finished job", async () => {
    const started = await seedJob(userId, { db, variations: 2, now: NOW - 9 * DAY });
    await claimAll(started.id, "r-x", NOW - 9 * DAY, 30_000, 1000, db);
    const [done, stopped] = await variationsOf(started.id, db);
    await db.update(variations).set({ status: "completed", outputKey: "outputs/x.mp4", outputSize: 1, finishedAt: NOW - 8.5 * DAY }).where(eq(variations.id, done!.id));
    // Its runner stopped the other when the account was disabled: back in the queue.
    await db.update(variations).set({ status: "queued", runnerId: null, leaseExpiresAt: null, attempts: 0 }).where(eq(variations.id, stopped!.id));
    const neverStarted = await seedJob(userId, { db, now: NOW - 9 * DAY });
    await setDisabled(true, NOW - 8 * DAY);
    const other = (await createUser(db, { email: `lc-other-${newId()}@test.example`, password: "pw-for-lifecycle", role: "user" })).id;
    const untouched = await seedJob(other, { db, now: NOW - 9 * DAY });
    await setUserDisabled(db, { actorId: adminId, userId: other, disabled: true }, NOW - 6 * DAY);

    // The rules as the cron runs them: this rule, then finalizeIdleJobs in the same tick.
    expect(await endDisabledAccountsWork(deps(), NOW)).toEqual({ cancelled: 2 });
    await finalizeIdleJobs(deps(), NOW);
    expect(await jobRow(started.id, db)).toMatchObject({ status: "cancelled", cancelReason: ACCOUNT_DISABLED_REASON, expiresAt: NOW + DAY });
    expect((await variationsOf(started.id, db)).map((v) => v.status).sort()).toEqual(["cancelled", "completed"]);
    expect(await jobRow(neverStarted.id, db)).toMatchObject({ status: "cancelled", cancelReason: ACCOUNT_DISABLED_REASON });
    // Disabled for less than the hold: still held for a re-enable.
    expect((await jobRow(untouched.id, db))!.status).toBe("queued");
  });
});

describe("recoverLeases", () => {
  it("requeues a variation whose runner vanished, and fails one at the attempt cap, finalizing its job", async () => {
    const lost = await seedJob(userId, { db, variations: 1, now: NOW - HOUR });
    await claimAll(lost.id, "r-dead", NOW - 10 * 60_000, 30_000, 1000, db);
    const capped = await seedJob(userId, { db, variations: 1, now: NOW - HOUR });
    await claimAll(capped.id, "r-dead", NOW - 10 * 60_000, 30_000, 1000, db);
    await db.update(variations).set({ attempts: 3 }).where(eq(variations.jobId, capped.id));
    const healthy = await seedJob(userId, { db, variations: 1, now: NOW - HOUR });
    await claimAll(healthy.id, "r-alive", NOW - 1000, 30_000, 1000, db);

    const report = await recoverLeases(deps(), NOW);
    expect(report).toEqual({ jobs: 2, finalized: 1 });
    expect((await variationsOf(lost.id, db))[0]).toMatchObject({ status: "queued", runnerId: null });
    expect((await variationsOf(capped.id, db))[0]!.status).toBe("failed");
    expect((await jobRow(capped.id, db))!.status).toBe("failed");
    expect((await variationsOf(healthy.id, db))[0]!.status).toBe("running");
  });
});

describe("finalizeIdleJobs", () => {
  it("finalizes active jobs left with nothing queued or running, and sweeps queued variations of cancelling jobs", async () => {
    const orphaned = await seedJob(userId, { db, variations: 1, now: NOW - HOUR });
    await claimAll(orphaned.id, "r-x", NOW - HOUR, 30_000, 1000, db);
    // The runner recorded the output but died before finalizing.
    await db
      .update(variations)
      .set({ status: "completed", outputKey: "outputs/x.mp4", outputSize: 1, finishedAt: NOW - 100 })
      .where(eq(variations.jobId, orphaned.id));
    const stuck = await seedJob(userId, { db, variations: 1, now: NOW - HOUR });
    await db
      .update(jobs)
      .set({ status: "cancelling", cancelRequestedAt: NOW - 1000, startedAt: NOW - HOUR })
      .where(eq(jobs.id, stuck.id));
    const running = await seedJob(userId, { db, variations: 1, now: NOW - HOUR });
    await claimAll(running.id, "r-y", NOW - 1000, 30_000, 1000, db);

    expect(await finalizeIdleJobs(deps(), NOW)).toEqual({ finalized: 2, cancelledQueued: 1 });
    expect(await jobRow(orphaned.id, db)).toMatchObject({ status: "completed", completedAt: NOW, expiresAt: NOW + DAY });
    expect(await jobRow(stuck.id, db)).toMatchObject({ status: "cancelled", cancelledAt: NOW });
    expect((await jobRow(running.id, db))!.status).toBe("processing");
  });
});

describe("enforceStorageCap", () => {
  // Sources are 1000 bytes each (seedJob), outputs 1000 here: 2000 per finished job, 1000 per queued one. The
  // user's quota is 1000 unless a test says otherwise: the cap takes only from users over their quota.
  const make = (finishedAt: number, owner = userId) => finishedJob(finishedAt, { outputBytes: 1000, owner });
  const capDeps = (limit: number, quota = 1000) => deps({ STORAGE_LIMIT_BYTES: limit, USER_STORAGE_BYTES: quota });

  it("evicts the oldest finished jobs until usage is under 85 % of STORAGE_LIMIT_BYTES, never active ones", async () => {
    const local = capDeps(6000);
    const oldest = await make(NOW - 4 * HOUR);
    const middle = await make(NOW - 3 * HOUR);
    const newest = await make(NOW - 2 * HOUR);
    const active = await seedJob(userId, { db, variations: 1, now: NOW - 5 * HOUR });

    // 7000 bytes used; target 5100: evicting the oldest (2000) is enough.
    expect(await enforceStorageCap(local, NOW)).toMatchObject({ evicted: 1, usedBytes: 5000 });
    expect(await jobRow(oldest.id, db)).toBeUndefined();
    expect(await keysUnder(`outputs/${oldest.id}/`)).toEqual([]);
    for (const j of [middle, newest, active]) expect(await jobRow(j.id, db)).toBeDefined();

    // Under the limit nothing happens.
    expect(await enforceStorageCap(local, NOW)).toMatchObject({ evicted: 0, usedBytes: 5000 });
  });

  it("never deletes the files of a job its owner reopens while the cap is evicting it: a reopen after the eviction began is told the job expired", async () => {
    const job = await make(NOW - 3 * HOUR);
    const viewer = { id: userId, email: "owner@test.example", role: "user" as const };
    // The owner asks for more variations in the middle of the eviction: after the cap chose the job, while it lists
    // the job's objects to delete them.
    let reopen: string | null = null;
    const racing = {
      list: async (opts: R2ListOptions) => {
        reopen ??= await addVariations(db, { jobId: job.id, viewer, perSource: 1, limits: ROOMY }, NOW).then(
          () => "reopened",
          (err: { code?: string }) => err.code ?? String(err),
        );
        return env.BUCKET.list(opts);
      },
      delete: env.BUCKET.delete.bind(env.BUCKET),
    } as unknown as R2Bucket;

    await enforceStorageCap({ ...capDeps(1500), bucket: racing }, NOW);
    expect(reopen).toBe("expired");
    expect(await jobRow(job.id, db)).toBeUndefined();
    expect(await keysUnder(`sources/${job.id}/`)).toEqual([]);
  });

  it("deletes nothing of a job reopened after the cap chose it: the purge finds it active and leaves every file", async () => {
    const job = await make(NOW - 3 * HOUR);
    const viewer = { id: userId, email: "owner@test.example", role: "user" as const };
    const before = [...(await keysUnder(`sources/${job.id}/`)), ...(await keysUnder(`outputs/${job.id}/`))];
    // The cap listed the job as finished; the owner's reopen commits before the cap acts on it.
    await addVariations(db, { jobId: job.id, viewer, perSource: 1, limits: ROOMY }, NOW);
    expect(await purgeJob(deps(), job.id)).toBe(false);
    expect((await jobRow(job.id, db))!.status).toBe("processing");
    expect([...(await keysUnder(`sources/${job.id}/`)), ...(await keysUnder(`outputs/${job.id}/`))]).toEqual(before);
  });

  it("deletes nothing of a job reopened and finished again after a rule chose it: a new finish has its own hour and expiry", async () => {
    const job = await make(NOW - 3 * HOUR);
    const viewer = { id: userId, email: "owner@test.example", role: "user" as const };
    // The cap (and the expiry rule, for a job past its expiry) listed it; the owner retried it, and it finished again
    // a minute before the rule acts on it.
    await db.update(jobs).set({ expiresAt: NOW - 1000 }).where(eq(jobs.id, job.id));
    await addVariations(db, { jobId: job.id, viewer, perSource: 1, limits: ROOMY }, NOW - 2 * 60_000);
    await db.update(variations).set({ status: "completed", finishedAt: NOW - 60_000 }).where(eq(variations.jobId, job.id));
    await db.update(jobs).set({ status: "completed", completedAt: NOW - 60_000, expiresAt: NOW - 60_000 + DAY }).where(eq(jobs.id, job.id));
    const before = [...(await keysUnder(`sources/${job.id}/`)), ...(await keysUnder(`outputs/${job.id}/`))];

    expect(await purgeJob(deps(), job.id, { finishedBy: NOW - HOUR })).toBe(false);
    expect(await purgeJob(deps(), job.id, { expiredBy: NOW })).toBe(false);
    expect(await jobRow(job.id, db)).toMatchObject({ status: "completed", expiresAt: NOW - 60_000 + DAY });
    expect([...(await keysUnder(`sources/${job.id}/`)), ...(await keysUnder(`outputs/${job.id}/`))]).toEqual(before);
    // What the rules chose it for still holding, it goes.
    expect(await purgeJob(deps(), job.id, { finishedBy: NOW })).toBe(true);
  });

  it("leaves what its time budget did not reach to the next tick, so the rules after it still run", async () => {
    const old = await make(NOW - 3 * HOUR);
    // A spent budget: the tick stops before its first eviction, and reports usage as it found it.
    expect(await enforceStorageCap(capDeps(1000), NOW, 0)).toMatchObject({ evicted: 0, usedBytes: 2000 });
    expect(await jobRow(old.id, db)).toBeDefined();
    expect(await enforceStorageCap(capDeps(1000), NOW + 60_000)).toMatchObject({ evicted: 1 });
    expect(await jobRow(old.id, db)).toBeUndefined();
  });

  it("keeps to its time budget while it lists what each user over quota could lose, not only while it evicts", async () => {
    const owners = [userId, await otherUser(), await otherUser()];
    for (const owner of owners) await make(NOW - 3 * HOUR, owner);
    // A budget spent from the start: the listing of every over-quota user's items is left to the next tick, so a
    // tick's time does not grow with how many users are over quota.
    const perUser: string[] = [];
    const restore = interceptStatements(db, (stmts) => {
      for (const st of stmts) if (typeof st !== "string" && owners.some((o) => (st.args as unknown[] | undefined)?.includes(o))) perUser.push(st.sql);
    });
    try {
      expect(await enforceStorageCap(capDeps(5000), NOW, 0)).toMatchObject({ evicted: 0, usedBytes: 6000 });
    } finally {
      restore();
    }
    expect(perUser).toEqual([]);
    expect(await enforceStorageCap(capDeps(5000), NOW + 60_000)).toMatchObject({ evicted: 1, usedBytes: 4000 });
  });

  it("never evicts a job that finished less than an hour ago, evicting only down to the limit when such bytes fill the target", async () => {
    const old = await make(NOW - 3 * HOUR);
    const young = await make(NOW - 30 * 60_000);
    const active = await seedJob(userId, { db, variations: 1, now: NOW - 5 * HOUR });

    // 5000 used, limit 3500 (target 2975); the young and the active job (3000) cannot be freed: the old one goes,
    // which brings usage under the limit, and the young one stays although usage is still above the target.
    expect(await enforceStorageCap(capDeps(3500), NOW)).toMatchObject({ evicted: 1, usedBytes: 3000 });
    expect(await jobRow(old.id, db)).toBeUndefined();
    expect(await jobRow(young.id, db)).toBeDefined();
    expect(await keysUnder(`outputs/${young.id}/`)).toHaveLength(1);
    expect(await jobRow(active.id, db)).toBeDefined();
  });

  it("evicts nothing when the bytes it cannot free are over the limit on their own", async () => {
    const old = await make(NOW - 3 * HOUR);
    const active = await seedJob(userId, { db, variations: 1, now: NOW - 5 * HOUR });

    // The active job alone (1000) is above a 500-byte limit: evicting the finished job would not help.
    expect(await enforceStorageCap(capDeps(500), NOW)).toMatchObject({ evicted: 0, usedBytes: 3000 });
    expect(await jobRow(old.id, db)).toBeDefined();
    expect(await keysUnder(`outputs/${old.id}/`)).toHaveLength(1);
    expect(await jobRow(active.id, db)).toBeDefined();
  });

  it("stops taking from an owner who deletes jobs of their own while the cap evicts, once they are within quota", async () => {
    const b = await otherUser();
    const bJob = await make(NOW - 20 * HOUR, b);
    const [first, second, third] = [await make(NOW - 6 * HOUR), await make(NOW - 5 * HOUR), await make(NOW - 4 * HOUR)];
    // 8000 used (A 6000 over a 2500 quota, B 2000 within it), limit 5000, target 4250: the cap chooses A's first two
    // jobs. While it deletes the first one's files, A deletes the third (the purge DELETE /api/jobs/:id runs).
    let ownerDeleted = false;
    const racing = {
      list: async (opts: R2ListOptions) => {
        if (!ownerDeleted) {
          ownerDeleted = true;
          expect(await purgeJob(deps(), third.id)).toBe(true);
        }
        return env.BUCKET.list(opts);
      },
      delete: env.BUCKET.delete.bind(env.BUCKET),
    } as unknown as R2Bucket;

    const report = await enforceStorageCap({ ...capDeps(5000, 2500), bucket: racing }, NOW);
    // A holds 2000 after those two: within quota, so the second job stays.
    expect(report).toMatchObject({ evicted: 1, usedBytes: 4000 });
    expect(await jobRow(first.id, db)).toBeUndefined();
    expect(await jobRow(second.id, db)).toBeDefined();
    expect(await keysUnder(`outputs/${second.id}/`)).toHaveLength(1);
    expect(await jobRow(bJob.id, db)).toBeDefined();
  });

  it("does not evict twice the excess when two ticks overlap: the second counts what the first freed", async () => {
    const [first, second, third] = [await make(NOW - 6 * HOUR), await make(NOW - 5 * HOUR), await make(NOW - 4 * HOUR)];
    // 6000 used, quota 3500, limit 5000 (target 4250): one job must go. A slow tick B read the usage and chose the
    // first job; tick A runs whole before B acts, and evicts it.
    let tickA: Record<string, number> | null = null;
    const slow = {
      list: async (opts: R2ListOptions) => {
        tickA ??= await enforceStorageCap(capDeps(5000, 3500), NOW);
        return env.BUCKET.list(opts);
      },
      delete: env.BUCKET.delete.bind(env.BUCKET),
    } as unknown as R2Bucket;
    const tickB = await enforceStorageCap({ ...capDeps(5000, 3500), bucket: slow }, NOW);

    expect(tickA).toMatchObject({ evicted: 1, usedBytes: 4000 });
    expect(tickB).toMatchObject({ evicted: 0, usedBytes: 4000 });
    expect(await jobRow(first.id, db)).toBeUndefined();
    for (const j of [second, third]) expect(await jobRow(j.id, db)).toBeDefined();
  });

  /** An unused (completed, never fed to a job) upload of `size` bytes, started at `at`. */
  async function unusedUpload(owner: string, size: number, at: number) {
    const user = { id: owner, email: "x@test.example", role: "user" as const };
    const up = await startUpload({ db, bucket: env.BUCKET }, { user, filename: "u.mp4", size, maxBytes: 1e9, limits: ROOMY }, at);
    await env.BUCKET.put(`uploads/${up.id}`, fakeMp4(size));
    await db.update(uploads).set({ status: "completed", completedAt: at }).where(eq(uploads.id, up.id));
    return up.id;
  }
  const uploadIds = async () => (await db.select({ id: uploads.id }).from(uploads)).map((u) => u.id);
  const otherUser = async () =>
    (await createUser(db, { email: `lc-b-${newId()}@test.example`, password: "pw-for-lifecycle", role: "user" })).id;

  it("never evicts a finished job of a user within quota, however far one user's unused uploads push usage over the limit", async () => {
    const b = await otherUser();
    const bJob = await make(NOW - 20 * HOUR, b);
    // User A: 6000 bytes of unused uploads, half of them under an hour old; over a 3000-byte quota.
    const old = await unusedUpload(userId, 3000, NOW - 2 * HOUR);
    const young = await unusedUpload(userId, 3000, NOW - 10 * 60_000);

    // 8000 used, limit 6000 (target 5100): A's old upload is all the cap may take (B is within quota, A's young
    // upload too new); the 5000 it cannot free are under the target.
    const report = await enforceStorageCap(capDeps(6000, 3000), NOW);
    expect(report).toMatchObject({ evicted: 0, uploadsFreed: 1, usedBytes: 5000 });
    expect(await uploadIds()).toEqual([young]);
    expect(await keysUnder(`uploads/${old}`)).toEqual([]);
    expect(await jobRow(bJob.id, db)).toBeDefined();
    expect(await keysUnder(`outputs/${bJob.id}/`)).toHaveLength(1);
    expect(await keysUnder(`sources/${bJob.id}/`)).toHaveLength(1);
  });

  it("never takes an upload still in use: opened hours ago but sending parts, or finished minutes ago with its job not yet made", async () => {
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    // Over quota (3000 of 1000) and the bucket over its limit (2500): only the upload quiet for over an hour may go.
    const sending = await startUpload({ db, bucket: env.BUCKET }, { user, filename: "big.mp4", size: 1000, maxBytes: 1e9, limits: ROOMY }, NOW - 5 * HOUR);
    await recordUploadPart(db, { uploadId: sending.id, partNumber: 1, etag: "e1", size: 500, now: NOW - 10 * 60_000 });
    const justDone = await unusedUpload(userId, 1000, NOW - 4 * HOUR);
    await db.update(uploads).set({ completedAt: NOW - 5 * 60_000, touchedAt: NOW - 5 * 60_000 }).where(eq(uploads.id, justDone));
    // Opened last, but quiet for two hours: the only one that may go.
    const forgotten = await unusedUpload(userId, 1000, NOW - 2 * HOUR);

    expect(await enforceStorageCap(capDeps(2500), NOW)).toMatchObject({ uploadsFreed: 1 });
    expect((await uploadIds()).sort()).toEqual([sending.id, justDone].sort());
    expect(await uploadIds()).not.toContain(forgotten);

    // Chosen while quiet, then a part arrives before the drop: the drop re-checks and leaves it.
    const resumed = await unusedUpload(userId, 1000, NOW - 3 * HOUR);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, resumed));
    await db.update(uploads).set({ touchedAt: NOW - 1000 }).where(eq(uploads.id, resumed));
    expect(await dropUnusedUpload({ db, bucket: env.BUCKET }, row!, NOW - HOUR)).toBe(false);
    expect(await uploadIds()).toContain(resumed);
  });

  it("frees a user's own unused uploads before any of their finished jobs, and stops once they are back within quota", async () => {
    const b = await otherUser();
    const bJob = await make(NOW - 20 * HOUR, b);
    const aJob = await make(NOW - 10 * HOUR);
    const upload = await unusedUpload(userId, 1500, NOW - 2 * HOUR);

    // 5500 used, limit 5000 (target 4250); A holds 3500 over a 2500 quota: its upload goes (A is then within
    // quota), its older job stays.
    expect(await enforceStorageCap(capDeps(5000, 2500), NOW)).toMatchObject({ evicted: 0, uploadsFreed: 1, usedBytes: 4000 });
    expect(await uploadIds()).not.toContain(upload);
    expect(await jobRow(aJob.id, db)).toBeDefined();
    expect(await jobRow(bJob.id, db)).toBeDefined();

    // A newer job and a young upload: A holds 4500. Its oldest job goes, which brings A back to its quota; the
    // 4500 the cap cannot free are above the target, so it stops at the limit. B's job stays.
    const aNewer = await make(NOW - 5 * HOUR);
    await unusedUpload(userId, 500, NOW - 30 * 60_000);
    expect(await enforceStorageCap(capDeps(5000, 2500), NOW)).toMatchObject({ evicted: 1, usedBytes: 4500 });
    expect(await jobRow(aJob.id, db)).toBeUndefined();
    expect(await jobRow(aNewer.id, db)).toBeDefined();
    expect(await jobRow(bJob.id, db)).toBeDefined();
  });
});

describe("deleteOrphanObjects", () => {
  it("deletes objects no row records once they are older than an hour, and keeps recorded ones", async () => {
    const job = await finishedJob(NOW);
    const [recorded] = await keysUnder(`outputs/${job.id}/`);
    await env.BUCKET.put(`outputs/${job.id}/lost-lease.mp4`, "late");
    await env.BUCKET.put("outputs/gone-job/x.mp4", "stray");

    // Just uploaded: too young to be called an orphan (its row may be about to be written).
    expect((await deleteOrphanObjects(deps(), Date.now() + 10 * 60_000)).deleted).toBe(0);
    const report = await deleteOrphanObjects(deps(), Date.now() + 2 * HOUR);
    expect(report.deleted).toBeGreaterThanOrEqual(2);
    expect(await keysUnder(`outputs/${job.id}/`)).toEqual([recorded]);
    expect(await keysUnder("outputs/gone-job/")).toEqual([]);
    expect(await keysUnder(`sources/${job.id}/`)).toHaveLength(1);
  });

  it("keeps a variation's recorded still and deletes one no row records (a superseded attempt's)", async () => {
    const job = await finishedJob(NOW);
    const [v] = await variationsOf(job.id, db);
    const kept = variationThumbnailKey(job.id, v!.id, 2);
    const stale = variationThumbnailKey(job.id, v!.id, 1);
    await db.update(variations).set({ thumbnailKey: kept }).where(eq(variations.id, v!.id));
    await env.BUCKET.put(kept, "jpeg");
    await env.BUCKET.put(stale, "jpeg of a lost attempt");
    await deleteOrphanObjects(deps(), Date.now() + 2 * HOUR);
    const left = await keysUnder(`outputs/${job.id}/`);
    expect(left).toContain(kept);
    expect(left).not.toContain(stale);
    // Expiry deletes the recorded still with the job's other objects.
    await db.update(jobs).set({ expiresAt: NOW - 1 }).where(eq(jobs.id, job.id));
    await expireFinishedJobs(deps(), NOW);
    expect(await keysUnder(`outputs/${job.id}/`)).toEqual([]);
  });
});

describe("deleteOrphanObjects over successive ticks", () => {
  it("walks the whole bucket with a cursor, reaching orphans behind more live objects than one tick lists", async () => {
    // R2 may return fewer objects per listing than asked for; three per page makes "more than one tick lists" small.
    const capped = {
      ...env.BUCKET,
      list: (o?: R2ListOptions) => env.BUCKET.list({ ...o, limit: Math.min(o?.limit ?? 1000, 3) }),
      delete: env.BUCKET.delete.bind(env.BUCKET),
    } as unknown as R2Bucket;
    const tag = newId();
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    // 36 recorded uploads sort before the orphans: more than the 30 objects one tick of 10 listings sees here.
    const live: string[] = [];
    for (let i = 0; i < 36; i++) {
      const up = await startUpload({ db, bucket: env.BUCKET }, { user, filename: `${i}.mp4`, size: 10, maxBytes: 1e9, limits: ROOMY }, NOW);
      const key = `uploads/${tag}-a${String(i).padStart(2, "0")}`;
      await db.update(uploads).set({ objectKey: key }).where(eq(uploads.id, up.id));
      await env.BUCKET.put(key, "live");
      live.push(key);
    }
    const orphans = ["z1", "z2", "z3"].map((z) => `uploads/${tag}-${z}`);
    for (const key of orphans) await env.BUCKET.put(key, "orphan");

    const later = Date.now() + 2 * HOUR;
    let passes = 0;
    for (let tick = 0; tick < 30 && passes < 1; tick++) {
      passes += (await deleteOrphanObjects({ ...deps(), bucket: capped }, later)).passes ?? 0;
    }
    expect(await keysUnder(`uploads/${tag}-z`)).toEqual([]);
    expect(await keysUnder(`uploads/${tag}-a`)).toEqual(live);
  });

  it("keeps the ground a tick covered when the platform ends it mid-walk: the next tick goes on from its last page", async () => {
    for (let i = 0; i < 7; i++) await env.BUCKET.put(`outputs/${newId()}/v.a1.mp4`, "x");
    let lists = 0;
    const seen: (string | undefined)[] = [];
    // Two listings of three objects, then a listing that never answers: the invocation is ended there, no finally runs.
    const dying = {
      ...env.BUCKET,
      list: (o?: R2ListOptions) => {
        seen.push(o?.startAfter);
        return ++lists > 2 ? new Promise<never>(() => {}) : env.BUCKET.list({ ...o, limit: 3 });
      },
      delete: env.BUCKET.delete.bind(env.BUCKET),
    } as unknown as R2Bucket;
    const tick = deleteOrphanObjects({ ...deps(), bucket: dying }, NOW);
    await waitUntilCalled(() => lists === 3);
    void tick;

    const resumed: (string | undefined)[] = [];
    const watching = {
      ...env.BUCKET,
      list: (o?: R2ListOptions) => {
        resumed.push(o?.startAfter);
        return env.BUCKET.list(o);
      },
      delete: env.BUCKET.delete.bind(env.BUCKET),
    } as unknown as R2Bucket;
    await deleteOrphanObjects({ ...deps(), bucket: watching }, NOW + 60_000);
    // It starts where the dead tick's third listing started: after the second page, not from the bucket's start.
    expect(seen[2]).toMatch(/^outputs\//);
    expect(resumed[0]).toBe(seen[2]);
  });
});

/** Polls (real time, short) until `done` holds: for a call made by work the test started but does not await. */
async function waitUntilCalled(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(done()).toBe(true);
}

describe("bounded growth", () => {
  it("deletes the uploads that fed a job, with their parts, when the job is deleted, and not those of an active job", async () => {
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    const jobFromUpload = async (name: string) => {
      const up = await startUpload({ db, bucket: env.BUCKET }, { user, filename: name, size: 100, maxBytes: 1e9, limits: ROOMY }, NOW - 3 * DAY);
      await recordUploadPart(db, { uploadId: up.id, partNumber: 1, etag: "etag-1", size: 100, contentType: "video/mp4", now: NOW });
      await env.BUCKET.put(`uploads/${up.id}`, fakeMp4(100));
      await markUploadCompleted(db, up.id, NOW - 3 * DAY);
      const job = await createJobFromUploads(
        db,
        { id: newId(), userId, variationsPerVideo: 1, retentionMs: DAY, uploadIds: [up.id], limits: ROOMY },
        NOW - 3 * DAY,
      );
      return { upload: up.id, job: job.id };
    };
    const done = await jobFromUpload("done.mp4");
    const active = await jobFromUpload("active.mp4");
    await db
      .update(jobs)
      .set({ status: "cancelled", cancelledAt: NOW - 2 * DAY, completedAt: NOW - 2 * DAY, expiresAt: NOW - DAY })
      .where(eq(jobs.id, done.job));

    expect(await expireFinishedJobs(deps(), NOW)).toEqual({ expired: 1 });
    expect(await db.select().from(uploads).where(eq(uploads.id, done.upload))).toEqual([]);
    expect(await db.select().from(uploadParts).where(eq(uploadParts.uploadId, done.upload))).toEqual([]);
    expect(await keysUnder(`uploads/${done.upload}`)).toEqual([]);

    // The delete is a compare-and-set on the job being finished: an active job keeps its rows and its uploads.
    expect(await deleteFinishedJobRows(db, active.job)).toBe(false);
    expect(await db.select({ status: uploads.status }).from(uploads).where(eq(uploads.id, active.upload))).toEqual([
      { status: "consumed" },
    ]);
    expect(await db.select().from(uploadParts).where(eq(uploadParts.uploadId, active.upload))).toHaveLength(1);
  });

  it("deletes a job's thumbnail with the job even when no row records it (stored after the job finished)", async () => {
    const job = await finishedJob(NOW - 3 * DAY);
    await env.BUCKET.put(thumbnailKey(job.id), "jpeg");

    expect(await expireFinishedJobs(deps(), NOW)).toEqual({ expired: 1 });
    expect(await env.BUCKET.head(thumbnailKey(job.id))).toBeNull();
  });

  it("removes runners not seen for a day and keeps offline ones seen within it", async () => {
    const beat = (id: string) => ({ id, host: "h", version: "1", concurrency: 1, active: 0 });
    await upsertRunner(db, beat("gone"), NOW - DAY - 60_000);
    await upsertRunner(db, beat("offline"), NOW - DAY + 60_000);
    await upsertRunner(db, beat("online"), NOW - 1000);

    await runLifecycle(deps(), NOW);
    expect((await db.select({ id: runners.id }).from(runners)).map((r) => r.id).sort()).toEqual(["offline", "online"]);
  });
});

describe("abortStaleUploads", () => {
  it("aborts uploads never used within JOB_TTL_HOURS and deletes their rows and objects", async () => {
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    const stale = await startUpload({ db, bucket: env.BUCKET }, { user, filename: "a.mp4", size: 100, maxBytes: 1e9, limits: ROOMY }, NOW - 25 * HOUR);
    const done = await startUpload({ db, bucket: env.BUCKET }, { user, filename: "b.mp4", size: 100, maxBytes: 1e9, limits: ROOMY }, NOW - 26 * HOUR);
    await env.BUCKET.put(`uploads/${done.id}`, fakeMp4(100));
    await db.update(uploads).set({ status: "completed" }).where(eq(uploads.id, done.id));
    const recent = await startUpload({ db, bucket: env.BUCKET }, { user, filename: "c.mp4", size: 100, maxBytes: 1e9, limits: ROOMY }, NOW - HOUR);

    expect(await abortStaleUploads(deps({ JOB_TTL_HOURS: 24 }), NOW)).toEqual({ aborted: 2 });
    const left = await db.select({ id: uploads.id }).from(uploads);
    expect(left.map((u) => u.id)).toEqual([recent.id]);
    expect(await keysUnder(`uploads/${done.id}`)).toEqual([]);
    expect(stale.id).not.toBe(recent.id);
  });

  it("keeps an upload used within JOB_TTL_HOURS however long ago it was opened: still sending parts, just completed, or a part arriving as the rule drops it", async () => {
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    const open = (at: number) => startUpload({ db, bucket: env.BUCKET }, { user, filename: "big.mp4", size: 1000, maxBytes: 1e9, limits: ROOMY }, at);
    const sending = await open(NOW - 30 * HOUR);
    await recordUploadPart(db, { uploadId: sending.id, partNumber: 1, etag: "e1", size: 500, now: NOW - 10 * 60_000 });
    const justDone = await open(NOW - 26 * HOUR);
    await env.BUCKET.put(`uploads/${justDone.id}`, fakeMp4(1000));
    expect(await markUploadCompleted(db, justDone.id, NOW - 5 * 60_000)).toBe(true);
    const forgotten = await open(NOW - 25 * HOUR);
    await recordUploadPart(db, { uploadId: forgotten.id, partNumber: 1, etag: "e1", size: 500, now: NOW - 25 * HOUR + 60_000 });
    // Quiet for a day when listed; its next part is recorded just before the rule's compare-and-set reaches it.
    const racing = await open(NOW - 27 * HOUR);
    let partSent = false;
    const restore = interceptStatements(db, async (stmts) => {
      const s = stmts[0]!;
      if (partSent || typeof s === "string" || !/^update "uploads" set "status"/i.test(s.sql) || !(s.args as unknown[]).includes(racing.id)) return;
      partSent = true;
      await recordUploadPart(db, { uploadId: racing.id, partNumber: 1, etag: "e1", size: 500, now: NOW - 1000 });
    });
    try {
      expect(await abortStaleUploads(deps({ JOB_TTL_HOURS: 24 }), NOW)).toEqual({ aborted: 1 });
    } finally {
      restore();
    }
    expect(partSent).toBe(true);
    const left = (await db.select({ id: uploads.id, status: uploads.status }).from(uploads)).sort((a, b) => a.id.localeCompare(b.id));
    expect(left).toEqual(
      [
        { id: sending.id, status: "uploading" },
        { id: justDone.id, status: "completed" },
        { id: racing.id, status: "uploading" },
      ].sort((a, b) => a.id.localeCompare(b.id)),
    );
    expect(await keysUnder(`uploads/${justDone.id}`)).toEqual([`uploads/${justDone.id}`]);

    // A day after their last use they go like any other.
    expect(await abortStaleUploads(deps({ JOB_TTL_HOURS: 24 }), NOW + DAY)).toEqual({ aborted: 3 });
  });
});

describe("abortStaleUploads against a slow bucket", () => {
  it("stops at its time budget and leaves the other stale uploads to the next tick, so the rules after it run", async () => {
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    for (let i = 0; i < 3; i++) {
      const done = await startUpload({ db, bucket: env.BUCKET }, { user, filename: `d${i}.mp4`, size: 100, maxBytes: 1e9, limits: ROOMY }, NOW - 26 * HOUR);
      await env.BUCKET.put(`uploads/${done.id}`, fakeMp4(100));
      await db.update(uploads).set({ status: "completed", touchedAt: NOW - 26 * HOUR }).where(eq(uploads.id, done.id));
    }
    // Each drop deletes its object in at least 150 ms: past the 100 ms budget after the first. Before, the rule
    // had no budget and went through up to 100 of them.
    expect(await abortStaleUploads({ ...deps({ JOB_TTL_HOURS: 24 }), bucket: slowDeletes(150) }, NOW, 100)).toEqual({ aborted: 1 });
    expect(await db.select({ id: uploads.id }).from(uploads)).toHaveLength(2);
    expect(await abortStaleUploads(deps({ JOB_TTL_HOURS: 24 }), NOW)).toEqual({ aborted: 2 });
  });
});

describe("abortAbandonedMultiparts", () => {
  it("aborts a multipart upload left open a day (its parts stop being stored), forgets one that was completed, and leaves a recent one alone", async () => {
    // Recorded as the edge records one it opens at `at`: due for the rule a day later.
    const open = async (key: string, at: number) => {
      const upload = await env.BUCKET.createMultipartUpload(key);
      await recordMultipartUpload(db, { uploadId: upload.uploadId, objectKey: key }, at + MULTIPART_ABANDON_MS);
      return upload;
    };
    const jobId = newId();
    const left = await open(`outputs/${jobId}/${newId()}.a1.mp4`, NOW - MULTIPART_ABANDON_MS - HOUR);
    await left.uploadPart(1, new Uint8Array(5 * 1024 * 1024));
    const completedKey = `outputs/${jobId}/${newId()}.a1.mp4`;
    const completed = await open(completedKey, NOW - MULTIPART_ABANDON_MS - HOUR);
    await completed.complete([await completed.uploadPart(1, fakeMp4(1000))]);
    const recent = await open(`sources/${jobId}/${newId()}`, NOW - HOUR);

    // R2 answers an abort of a completed upload "no such upload" (gone); miniflare's local R2 takes it (aborted).
    const { aborted = 0, gone = 0 } = await abortAbandonedMultiparts(deps(), NOW);
    expect(aborted + gone).toBe(2);
    expect(aborted).toBeGreaterThanOrEqual(1);
    await expect(env.BUCKET.resumeMultipartUpload(left.key, left.uploadId).uploadPart(2, fakeMp4(10))).rejects.toThrow(/does not exist|NoSuchUpload|10024/i);
    // The completed upload's object is untouched; the recent upload still takes parts.
    expect((await env.BUCKET.head(completedKey))?.size).toBe(1000);
    await recent.uploadPart(1, fakeMp4(10));
    expect((await db.select().from(multipartUploads)).map((r) => r.uploadId)).toEqual([recent.uploadId]);
    expect(await abortAbandonedMultiparts(deps(), NOW)).toEqual({ aborted: 0, gone: 0, failed: 0 });
  });
});

describe("multipart uploads whose abort fails", () => {
  /** The test bucket, with the abort of these upload ids failing as R2 does when it errs. */
  function failingAborts(ids: Set<string>): R2Bucket {
    return new Proxy(env.BUCKET, {
      get(target, prop) {
        const value = Reflect.get(target, prop) as unknown;
        if (prop !== "resumeMultipartUpload") return typeof value === "function" ? value.bind(target) : value;
        return (key: string, uploadId: string) => {
          const upload = env.BUCKET.resumeMultipartUpload(key, uploadId);
          if (!ids.has(uploadId)) return upload;
          return { ...upload, uploadPart: upload.uploadPart.bind(upload), complete: upload.complete.bind(upload), abort: async () => { throw new Error("internal error (10001)"); } };
        };
      },
    });
  }

  it("goes on past a row whose abort keeps failing, and tries that one again an hour later", async () => {
    const older = await env.BUCKET.createMultipartUpload(`outputs/${newId()}/${newId()}.a1.mp4`);
    const newer = await env.BUCKET.createMultipartUpload(`outputs/${newId()}/${newId()}.a1.mp4`);
    await recordMultipartUpload(db, { uploadId: older.uploadId, objectKey: older.key }, NOW - 2 * HOUR);
    await recordMultipartUpload(db, { uploadId: newer.uploadId, objectKey: newer.key }, NOW - HOUR);
    const bucket = failingAborts(new Set([older.uploadId]));
    expect(await abortAbandonedMultiparts({ ...deps(), bucket }, NOW)).toEqual({ aborted: 1, gone: 0, failed: 1 });
    expect((await db.select().from(multipartUploads)).map((r) => r.uploadId)).toEqual([older.uploadId]);
    expect(await abortAbandonedMultiparts(deps(), NOW + 30 * 60_000)).toEqual({ aborted: 0, gone: 0, failed: 0 });
    expect(await abortAbandonedMultiparts(deps(), NOW + HOUR + 60_000)).toEqual({ aborted: 1, gone: 0, failed: 0 });
    expect(await db.select().from(multipartUploads)).toEqual([]);
  });

  it("keeps an upload API upload whose abort failed on record when its row is dropped, and the rule aborts it", async () => {
    const user = { id: userId, email: "x@test.example", role: "user" as const };
    const upload = await startUpload({ db, bucket: env.BUCKET }, { user, filename: "a.mp4", size: 6 * 1024 * 1024, maxBytes: 1e9, limits: ROOMY }, NOW - 25 * HOUR);
    const [row] = await db.select().from(uploads).where(eq(uploads.id, upload.id));
    const mp = env.BUCKET.resumeMultipartUpload(row!.objectKey, row!.r2UploadId);
    await mp.uploadPart(1, new Uint8Array(5 * 1024 * 1024));
    expect(await abortStaleUploads({ ...deps({ JOB_TTL_HOURS: 24 }), bucket: failingAborts(new Set([row!.r2UploadId])) }, NOW)).toEqual({ aborted: 1 });
    expect(await db.select().from(uploads).where(eq(uploads.id, upload.id))).toEqual([]);
    expect((await db.select().from(multipartUploads)).map((r) => r.uploadId)).toEqual([row!.r2UploadId]);
    expect(await abortAbandonedMultiparts(deps(), NOW)).toMatchObject({ aborted: 1 });
    await expect(mp.uploadPart(2, fakeMp4(10))).rejects.toThrow(/does not exist|NoSuchUpload|10024/i);
  });
});

describe("pruneAuth and runLifecycle", () => {
  it("removes expired sessions", async () => {
    const s = await createSession(db, { userId }, NOW - 8 * DAY);
    const live = await createSession(db, { userId }, NOW - DAY);
    const report = await pruneAuth(deps(), NOW);
    expect(report.sessions).toBeGreaterThanOrEqual(1);
    const rows = await db.select({ expiresAt: sessions.expiresAt }).from(sessions);
    expect(rows.map((r) => r.expiresAt)).toContain(live.expiresAt);
    expect(rows.map((r) => r.expiresAt)).not.toContain(s.expiresAt);
  });

  it("prunes a pile of expired sessions and quiet login counters a bounded batch at a time, the rest on later ticks", async () => {
    for (let i = 0; i < 5; i++) await createSession(db, { userId }, NOW - 8 * DAY - i);
    const live = await createSession(db, { userId }, NOW - DAY);
    const quiet = Array.from({ length: 5 }, (_, i) => ({ key: `account:nobody-${i}@test.example`, attempts: 1, lockedUntil: 0, updatedAt: NOW - 2 * HOUR }));
    await db.insert(loginFailures).values([...quiet, { key: "account:locked@test.example", attempts: 9, lockedUntil: NOW + HOUR, updatedAt: NOW - 2 * HOUR }]);

    // Two statements of two rows each per kind: a tick that meets a backlog ends, and the next one goes on.
    expect(await pruneAuth(deps(), NOW, { batch: 2, batches: 2 })).toEqual({ sessions: 4, loginAttempts: 4 });
    expect(await pruneAuth(deps(), NOW + 60_000, { batch: 2, batches: 2 })).toEqual({ sessions: 1, loginAttempts: 1 });
    expect(await pruneAuth(deps(), NOW + 120_000, { batch: 2, batches: 2 })).toEqual({ sessions: 0, loginAttempts: 0 });
    expect((await db.select({ expiresAt: sessions.expiresAt }).from(sessions)).map((r) => r.expiresAt)).toEqual([live.expiresAt]);
    expect((await db.select({ key: loginFailures.key }).from(loginFailures)).map((r) => r.key)).toEqual(["account:locked@test.example"]);
  });

  it("runs every rule and reports each one, a failing rule not stopping the others", async () => {
    const broken = { ...env.BUCKET, list: async () => { throw new Error("list failed"); }, delete: env.BUCKET.delete.bind(env.BUCKET) } as unknown as R2Bucket;
    const report = await runLifecycle({ ...deps(), bucket: broken }, NOW);
    expect(Object.keys(report)).toEqual([
      "recoverLeases",
      "endDisabledAccountsWork",
      "finalizeIdleJobs",
      "failStaleQueued",
      "expireFinishedJobs",
      "enforceStorageCap",
      "deleteOrphanObjects",
      "abortStaleUploads",
      "abortAbandonedMultiparts",
      "pruneAuth",
      "pruneRunners",
    ]);
    expect(report.deleteOrphanObjects).toEqual({ error: "list failed" });
    expect(report.pruneAuth).toMatchObject({ sessions: expect.any(Number) });
  });
});

describe("the scheduled handler", () => {
  it("runs the lifecycle at the trigger's scheduled time against the configured database", async () => {
    const { db: own, url } = await isolatedDatabase();
    const owner = (await createUser(own, { email: `cron-${newId()}@test.example`, password: "pw-for-cron", role: "user" })).id;
    const job = await seedJob(owner, { db: own, variations: 1, now: NOW - 3 * DAY });
    await own
      .update(jobs)
      .set({ status: "cancelled", completedAt: NOW - 2 * DAY, cancelledAt: NOW - 2 * DAY, expiresAt: NOW - DAY })
      .where(eq(jobs.id, job.id));
    const pending: Promise<unknown>[] = [];
    const ctx = { waitUntil: (p: Promise<unknown>) => pending.push(p), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const controller = { scheduledTime: NOW, cron: "* * * * *", noRetry() {} } as ScheduledController;
    await worker.scheduled(controller, { ...env, LIBSQL_URL: url }, ctx);
    await Promise.all(pending);
    expect(await jobRow(job.id, own)).toBeUndefined();
    expect(await keysUnder(`sources/${job.id}/`)).toEqual([]);
  });
});
