import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { newId } from "../../../db/ids";
import { estimateQueue } from "../../../db/queries/jobs/estimate-queue";
import { listIdleActiveJobIds } from "../../../db/queries/lifecycle";
import { setUserDisabled } from "../../../db/queries/users";
import { cancelVariation, claimVariation, claimVariations, heartbeatVariations } from "../../../db/queries/variations";
import { claimDelivery, createWebhook, peekDelivery, takeDueDeliveries } from "../../../db/queries/webhooks";
import { sessions, users, variations, webhookDeliveries } from "../../../db/schema";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, getJobRow, seedJob } from "../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 30_000;
const R = "r1";
const ADMIN = "admin-who-acts";
const src = [{ objectKey: "sources/j/s" }];

async function variation(db: Db, id: string) {
  const [row] = await db.select().from(variations).where(eq(variations.id, id));
  return row!;
}

/** The acting admin must be an enabled admin of the same database. */
async function asAdmin(db: Db) {
  await db.insert(users).values({ id: ADMIN, email: `${ADMIN}@test.local`, passwordHash: "x", role: "admin", createdAt: NOW }).onConflictDoNothing();
}
const disable = async (db: Db, userId: string, now: number) => {
  await asAdmin(db);
  return setUserDisabled(db, { actorId: ADMIN, userId, disabled: true }, now);
};
const enable = (db: Db, userId: string, now: number) => setUserDisabled(db, { actorId: ADMIN, userId, disabled: false }, now);

describe("setUserDisabled holds a disabled account's work until it is re-enabled", () => {
  it("hands none of its queued variations to runners while another user's are served, and resumes them on re-enable", async () => {
    const { db } = await freshDb(server, "disabled_claim");
    // The disabled user's job is older: plain oldest-first would serve it before the other user's.
    const held = await seedJob(db, { sources: src, variationsPerSource: 3, createdAt: NOW - 2000 });
    const other = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 1000 });
    await disable(db, held.userId, NOW);

    // Nor does it count ahead of anyone in the queue estimate: no runner will serve it.
    const estimates = await estimateQueue(db, [(await getJobRow(db, other.jobId))!], NOW + 1);
    expect(estimates.get(other.jobId)).toMatchObject({ queuePosition: 0 });
    const { claimed } = await claimVariations(db, { runnerId: R, leaseMs: LEASE, now: NOW + 2, limit: 4 });
    expect(claimed.map((c) => c.jobId)).toEqual([other.jobId]);
    expect((await getJobRow(db, held.jobId))!.status).toBe("queued");

    await enable(db, held.userId, NOW + 3);
    const again = await claimVariation(db, { runnerId: R, leaseMs: LEASE, now: NOW + 4 });
    expect(again?.jobId).toBe(held.jobId);
  });

  it("tells the runner to stop its running encodes, and the stop hands them back with the attempt refunded, the job untouched", async () => {
    const { db } = await freshDb(server, "disabled_running");
    const job = await seedJob(db, { sources: src, variationsPerSource: 2, createdAt: NOW - 1000 });
    const first = (await claimVariation(db, { runnerId: R, leaseMs: LEASE, now: NOW }))!;
    await disable(db, job.userId, NOW + 1);

    const hb = await heartbeatVariations(db, { runnerId: R, now: NOW + 2, leaseMs: LEASE, variations: [{ id: first.id, attempt: first.attempt }] });
    expect(hb.cancelJobIds).toEqual([job.jobId]);
    expect(await cancelVariation(db, { variationId: first.id, runnerId: R, attempt: first.attempt, stopStage: "q", now: NOW + 3 })).toBe(true);
    expect(await variation(db, first.id)).toMatchObject({ status: "queued", attempts: 0 });
    // Still active with queued work: neither finished nor on the cron's list of idle jobs to finalize.
    expect(await getJobRow(db, job.jobId)).toMatchObject({ status: "processing", completedAt: null });
    expect(await listIdleActiveJobIds(db, 100)).not.toContain(job.jobId);

    await enable(db, job.userId, NOW + 4);
    const hb2 = await heartbeatVariations(db, { runnerId: R, now: NOW + 5, leaseMs: LEASE, variations: [] });
    expect(hb2.cancelJobIds).toEqual([]);
    const { claimed } = await claimVariations(db, { runnerId: R, leaseMs: LEASE, now: NOW + 6, limit: 2 });
    expect(claimed.map((c) => c.id).sort()).toEqual([...job.variationIds].sort());
  });

  it("keeps its webhook deliveries waiting — not swept, not claimed — and sends them once it is re-enabled", async () => {
    const { db } = await freshDb(server, "disabled_webhooks");
    const job = await seedJob(db, { sources: src, variationsPerSource: 1, createdAt: NOW - 1000 });
    const hook = await createWebhook(db, { userId: job.userId, url: "https://example.test/hook", events: ["job.completed"] }, NOW - 900);
    const id = newId();
    await db.insert(webhookDeliveries).values({
      id, webhookId: hook.id, jobId: job.jobId, event: "job.completed", occurredAt: NOW - 800, nextAttemptAt: NOW - 800, createdAt: NOW - 800,
    });
    await disable(db, job.userId, NOW);

    expect(await takeDueDeliveries(db, NOW + 1, 10)).toEqual([]);
    expect(await takeDueDeliveries(db, NOW + 1, 10, { webhookId: hook.id })).toEqual([]);
    // A queue message sent before the disable finds nothing to send.
    expect(await peekDelivery(db, id, NOW + 2)).toBeNull();
    expect(await claimDelivery(db, id, NOW + 2, 30_000, "{}")).toBeNull();
    const [row] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
    expect(row).toMatchObject({ status: "pending", attempts: 0 });

    await enable(db, job.userId, NOW + 3);
    expect(await takeDueDeliveries(db, NOW + 4, 10)).toEqual([id]);
    expect(await claimDelivery(db, id, NOW + 5, 30_000, "{}")).toMatchObject({ id, attempts: 1 });
  });
});

describe("setUserDisabled by two admins at once", () => {
  it("does not let an admin disabled a moment ago disable the other: one admin is always left", async () => {
    const { db } = await freshDb(server, "admins_race");
    const a = newId();
    const b = newId();
    await db.insert(users).values([
      { id: a, email: `${a}@test.local`, passwordHash: "x", role: "admin", createdAt: NOW },
      { id: b, email: `${b}@test.local`, passwordHash: "x", role: "admin", createdAt: NOW },
    ]);
    await db.insert(sessions).values({ id: newId(), tokenHash: newId(), userId: b, createdAt: NOW, expiresAt: NOW + 3600_000, lastSeenAt: NOW });
    // Both requests passed their sign-in check; B's disable of A commits first.
    await setUserDisabled(db, { actorId: b, userId: a, disabled: true }, NOW);
    await expect(setUserDisabled(db, { actorId: a, userId: b, disabled: true }, NOW + 1)).rejects.toMatchObject({ status: 403 });
    const rows = await db.select({ id: users.id, disabledAt: users.disabledAt }).from(users);
    expect(rows.find((r) => r.id === b)!.disabledAt).toBeNull();
    expect(rows.find((r) => r.id === a)!.disabledAt).toBe(NOW);
    // B stays signed in: the refused disable ends none of B's sessions.
    expect(await db.select().from(sessions).where(eq(sessions.userId, b))).toHaveLength(1);
  });
});
