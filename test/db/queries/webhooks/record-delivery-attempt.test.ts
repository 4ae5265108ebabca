import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newId } from "../../../../db/ids";
import { claimDelivery, createWebhook, redeliverDelivery } from "../../../../db/queries/webhooks";
import { recordDeliveryAttempt } from "../../../../db/queries/webhooks/record-delivery-attempt";
import { webhookDeliveries } from "../../../../db/schema";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const LEASE = 60_000;
const URL_ = "https://example.test/hook";

describe("recordDeliveryAttempt", () => {
  it("ignores a consumer that stalled past its lease once the row was delivered and redelivered: the new series' attempt keeps its lease", async () => {
    const { db } = await freshDb(server, "record_after_redeliver");
    const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], createdAt: NOW - 10_000 });
    const hook = await createWebhook(db, { userId: job.userId, url: URL_, events: ["job.completed"] }, NOW - 9000);
    const id = newId();
    await db.insert(webhookDeliveries).values({ id, webhookId: hook.id, jobId: job.jobId, event: "job.completed", occurredAt: NOW, nextAttemptAt: NOW, createdAt: NOW });
    const record = (claim: { attempts: number; claimedAt: number }, at: number) =>
      recordDeliveryAttempt(db, { id, webhookId: hook.id, url: URL_, attempt: claim.attempts, claimedAt: claim.claimedAt, payload: "{}", outcome: { kind: "delivered", statusCode: 200 }, endpoint: { answered: true } }, at);

    // A claims attempt 1 and stalls; its lease runs out, B sends attempt 2 and records it delivered.
    const a = (await claimDelivery(db, id, NOW + 1, LEASE, "{}"))!;
    const b = (await claimDelivery(db, id, NOW + LEASE + 2, LEASE, "{}"))!;
    expect(await record(b, NOW + LEASE + 3)).toBe("delivered");
    // The owner sends it again: a new series, whose first claim (C) is attempt 1 again.
    await redeliverDelivery(db, { userId: job.userId, webhookId: hook.id, deliveryId: id }, NOW + LEASE + 4);
    const c = (await claimDelivery(db, id, NOW + LEASE + 5, LEASE, "{}"))!;
    expect([a.attempts, c.attempts]).toEqual([1, 1]);

    // A finally records: it must not settle C's send, nor free the row for a second send beside C's.
    expect(await record(a, NOW + LEASE + 6)).toBeNull();
    const [row] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
    expect(row).toMatchObject({ status: "pending", attempts: 1, leaseUntil: NOW + LEASE + 5 + LEASE });
    expect(await record(c, NOW + LEASE + 7)).toBe("delivered");
  });
});
