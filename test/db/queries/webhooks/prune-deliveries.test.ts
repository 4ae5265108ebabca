import { describe, expect, it } from "vitest";
import { newId } from "../../../../db/ids";
import { createWebhook, pruneDeliveries } from "../../../../db/queries/webhooks";
import { webhookDeliveries, type DeliveryStatus } from "../../../../db/schema";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";
import { planOf, statementsOf } from "../../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const DAY = 86_400_000;

describe("pruneDeliveries", () => {
  it("removes settled deliveries whose series began before the cutoff, keeping pending ones and redeliveries sent since", async () => {
    const { db } = await freshDb(server, "prune_deliveries");
    const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], createdAt: NOW - 30 * DAY });
    const hook = await createWebhook(db, { userId: job.userId, url: "https://example.test/hook", events: ["job.completed"] }, NOW - 30 * DAY);
    const row = (status: DeliveryStatus, createdAt: number, seriesStartedAt: number | null = null) => {
      const id = newId();
      return { id, webhookId: hook.id, jobId: job.jobId, event: "job.completed", occurredAt: createdAt + Math.random(), status, nextAttemptAt: createdAt, createdAt, seriesStartedAt };
    };
    const gone = [row("delivered", NOW - 8 * DAY), row("failed", NOW - 9 * DAY), row("delivered", NOW - 10 * DAY, NOW - 9 * DAY)];
    const kept = [row("pending", NOW - 8 * DAY), row("delivered", NOW - 6 * DAY), row("failed", NOW - 8 * DAY, NOW - DAY)];
    await db.insert(webhookDeliveries).values([...gone, ...kept]);

    expect(await pruneDeliveries(db, NOW - 7 * DAY, 2)).toBe(2);
    expect(await pruneDeliveries(db, NOW - 7 * DAY, 2)).toBe(1);
    expect(await pruneDeliveries(db, NOW - 7 * DAY, 2)).toBe(0);
    const left = await db.select({ id: webhookDeliveries.id }).from(webhookDeliveries);
    expect(left.map((r) => r.id).sort()).toEqual(kept.map((r) => r.id).sort());
  });

  // Every tick's last batch finds fewer rows than its limit: filtered by status alone, it read every settled row of
  // the past week, under the write lock that every claim and settle waits behind.
  it("ranges over the settled rows past the cutoff, not over every settled row in the log", async () => {
    const { db } = await freshDb(server, "prune_deliveries_plan");
    const { db: plans } = await freshDb(server, "prune_deliveries_plan_explained");
    const [stmt] = await statementsOf(db, () => pruneDeliveries(db, NOW - 7 * DAY, 10));
    const plan = await planOf(plans, stmt!);
    expect(plan.filter((d) => /webhook_deliveries/.test(d)), plan.join("\n")).toContainEqual(
      expect.stringMatching(/^SEARCH webhook_deliveries USING (COVERING )?INDEX webhook_deliveries_window_idx \(status=\? AND <expr><\?\)$/),
    );
  });
});
