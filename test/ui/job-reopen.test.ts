import { readFile } from "node:fs/promises";
import { eq } from "drizzle-orm";
import type { Route } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb, type Db } from "../../db/client";
import { jobs, variations } from "../../db/schema";
import { apiOf, makeClip, uiSuite } from "./helpers";

/**
 * Reopening a finished job (More variations) when an answer is lost, against the real stack without a runner: the
 * job stays queued once reopened, so what the page shows is what the edge did, not what a runner did after.
 */
describe("reopening a job whose answer was lost", () => {
  const suite = uiSuite({ runners: 0 });
  let db: Db;
  let clip: Buffer;

  beforeAll(async () => {
    db = createDb(suite.ui.stack.libsqlUrl, { authToken: suite.ui.stack.libsqlAuthToken });
    clip = await readFile(await makeClip(suite.dir, "reopen.mp4", 2));
  }, 60_000);
  afterAll(() => db?.$client.close());

  it("sends the same Idempotency-Key when More variations is clicked again after its answer was lost, so the job gets one batch, and shows the job's real status once it can read it", async () => {
    const { context, page } = await suite.newUser("reopen-lost");
    const api = apiOf(context, suite.ui.url);
    // A real job (its source is stored, which More variations checks), made finished in the database.
    const { id } = await api.createJob({ name: "reopen.mp4", buffer: clip }, 1);
    const now = Date.now();
    await db.batch([
      db.update(jobs).set({ status: "completed", completedAt: now, updatedAt: now, expiresAt: now + 24 * 3_600_000 }).where(eq(jobs.id, id)),
      db.update(variations).set({ status: "completed", progress: 100, finishedAt: now }).where(eq(variations.jobId, id)),
    ]);
    expect((await api.job(id)).status).toBe("completed");

    const jobUrl = `${suite.ui.url}/jobs/${id}`;
    await page.goto(jobUrl);
    await page.waitForSelector("body[data-ready=true]");
    const statusBadge = page.locator(".job-summary .badge");
    expect(await statusBadge.textContent()).toBe("Completed");

    // The page cannot read the job while this is on: every GET of it fails as a dropped connection would.
    let readable = false;
    let failedGets = 0;
    await page.route(`${suite.ui.url}/api/jobs/${id}`, async (route: Route) => {
      if (route.request().method() !== "GET" || readable) return route.fallback();
      failedGets++;
      return route.abort("connectionreset");
    });
    // The first More reaches the edge, which adds the batch; its answer is then dropped. Later ones go through.
    const posts: { key: string | undefined; status: number; replayed: string | undefined }[] = [];
    await page.route(`${suite.ui.url}/api/jobs/${id}/more`, async (route: Route) => {
      const key = route.request().headers()["idempotency-key"];
      const res = await route.fetch();
      posts.push({ key, status: res.status(), replayed: res.headers()["idempotent-replayed"] });
      if (posts.length === 1) return route.abort("connectionreset");
      return route.fulfill({ response: res });
    });

    const more = page.getByRole("button", { name: "More variations" });
    await more.click();
    const error = page.locator(".job-summary .job-control-error:not([hidden])");
    await expect.poll(() => error.textContent(), { timeout: 15_000 }).toMatch(/^Could not add variations: Could not reach the server/);
    expect(posts).toHaveLength(1);
    expect(posts[0]!.status).toBe(200);
    expect(posts[0]!.key).toBeTruthy();
    // The page asks for the job again (the request may have been done); it cannot learn it yet, so it still shows
    // the finished job and its More variations button.
    await expect.poll(() => failedGets, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    expect(await statusBadge.textContent()).toBe("Completed");
    expect((await api.job(id)).totalVariations).toBe(2);

    await more.click();
    await expect.poll(() => posts.length, { timeout: 15_000 }).toBe(2);
    expect(posts[1]!.key).toBe(posts[0]!.key);
    expect(posts[1]!.status).toBe(200);
    expect(posts[1]!.replayed).toBe("true");
    const after = await api.job(id);
    expect(after.totalVariations).toBe(2);
    expect(await db.select({ id: variations.id }).from(variations).where(eq(variations.jobId, id))).toHaveLength(2);

    readable = true;
    await expect.poll(() => statusBadge.textContent(), { timeout: 15_000 }).toBe("Queued");
    expect(await page.locator(".job-summary .job-count").textContent()).toBe("1 of 2 variations completed");
    expect(after.status).toBe("queued");
    await context.close();
  }, 120_000);
});
