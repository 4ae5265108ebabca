import { describe, expect, it } from "vitest";
import { newId } from "../../../../db/ids";
import { createWebhook, takeDueDeliveries } from "../../../../db/queries/webhooks";
import { webhookDeliveries } from "../../../../db/schema";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";
import { statementsOf } from "../../../helpers/statements";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;

describe("takeDueDeliveries for one user (the kick after a job request)", () => {
  it("takes only that user's due deliveries and never walks other users' endpoints", async () => {
    const { db } = await freshDb(server, "take_due_of_user");
    const due = async () => {
      const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], createdAt: NOW - 1000 });
      const hook = await createWebhook(db, { userId: job.userId, url: "https://example.test/hook", events: ["job.completed"] }, NOW - 1000);
      const id = newId();
      await db.insert(webhookDeliveries).values({ id, webhookId: hook.id, jobId: job.jobId, event: "job.completed", occurredAt: NOW - 500, status: "pending", nextAttemptAt: NOW - 500, createdAt: NOW - 500 });
      return { userId: job.userId, id };
    };
    const [mine, other] = [await due(), await due()];

    const statements = await statementsOf(db, async () => expect(await takeDueDeliveries(db, NOW, 100, { userId: mine.userId })).toEqual([mine.id]));
    // Other users' endpoints with pending rows are not visited: the endpoints come from this user's webhooks.
    expect(statements.map((s) => s.sql).join("\n")).not.toMatch(/min\(x\.webhook_id\)/);
    // The other user's row is still due for the sweep.
    expect(await takeDueDeliveries(db, NOW, 100)).toEqual([other.id]);
  });
});
