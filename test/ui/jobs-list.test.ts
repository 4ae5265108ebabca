import { readFile } from "node:fs/promises";
import { eq } from "drizzle-orm";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb, type Db } from "../../db/client";
import { jobs, variations } from "../../db/schema";
import { seedJob } from "../helpers/seed";
import { apiOf, makeClip, uiSuite, requestOf } from "./helpers";

/**
 * The jobs list against the real stack without a runner: queued jobs stay queued, so "active" is under the test's
 * control. Jobs are seeded straight into the stack's database with set creation times, so the order is known.
 */
describe("jobs list", () => {
  const suite = uiSuite({ runners: 0 });
  let db: Db;

  beforeAll(() => {
    db = createDb(suite.ui.stack.libsqlUrl, { authToken: suite.ui.stack.libsqlAuthToken });
  });
  afterAll(() => db?.$client.close());

  async function userId(context: BrowserContext): Promise<string> {
    const res = await requestOf(context).get(`${suite.ui.url}/api/me`);
    return ((await res.json()) as { user: { id: string } }).user.id;
  }

  /** A finished job (every variation completed) or a queued one, created at `createdAt`. */
  async function seed(owner: string, name: string, createdAt: number, finished: boolean): Promise<string> {
    const { jobId } = await seedJob(db, {
      userId: owner,
      sources: [{ objectKey: `uploads/${owner}/${name}`, name }],
      status: finished ? "completed" : "queued",
      createdAt,
    });
    if (finished) {
      await db.batch([
        db.update(jobs).set({ completedAt: createdAt + 1_000, updatedAt: createdAt + 1_000 }).where(eq(jobs.id, jobId)),
        db.update(variations).set({ status: "completed", progress: 100, finishedAt: createdAt + 1_000 }).where(eq(variations.jobId, jobId)),
      ]);
    }
    return jobId;
  }

  const listedIds = (page: Page) => page.locator("#job-list > li").evaluateAll((els) => els.map((el) => (el as HTMLElement).dataset.jobId ?? ""));

  async function openJobs(page: Page) {
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]");
  }

  it("keeps the newest job on top after a live update, with older jobs only below and none listed twice", async () => {
    const { context, page } = await suite.newUser("order");
    const owner = await userId(context);
    const start = Date.now() - 3_600_000;
    const finished: string[] = [];
    for (let i = 0; i < 25; i++) finished.push(await seed(owner, `old-${String(i).padStart(2, "0")}.mp4`, start + i * 60_000, true));
    const active = await seed(owner, "newest.mp4", start + 25 * 60_000, false);
    const newestFirst = [active, ...finished.reverse()];

    // The list's own polls (not the first page) tell when a live update has been applied: the poller sends the next
    // one only after the previous one's answer is in the page.
    const listRequests: string[] = [];
    page.on("request", (req) => {
      if (req.method() === "GET" && /\/api\/jobs\?limit=/.test(req.url())) listRequests.push(req.url());
    });
    await openJobs(page);
    expect(await listedIds(page)).toEqual(newestFirst.slice(0, 20));
    await expect.poll(() => listRequests.length, { timeout: 30_000 }).toBeGreaterThanOrEqual(3);

    const afterPoll = await listedIds(page);
    expect(afterPoll).toEqual(newestFirst.slice(0, 20));

    await page.getByRole("button", { name: "Load more" }).click();
    await expect.poll(() => page.locator("#job-list > li").count()).toBe(26);
    const all = await listedIds(page);
    expect(all).toEqual(newestFirst);
    expect(new Set(all).size).toBe(all.length);
    await context.close();
  }, 120_000);

  it("shows the jobs a bulk cancel finished as Cancelled (0/N) with their expiry, in place, when no other job is active", async () => {
    const { context, page } = await suite.newUser("bulk-last");
    const owner = await userId(context);
    const now = Date.now();
    const seedQueued = async (name: string, perSource: number, createdAt: number) =>
      (await seedJob(db, { userId: owner, sources: [{ objectKey: `uploads/${owner}/${name}`, name }], variationsPerSource: perSource, createdAt })).jobId;
    const one = await seedQueued("one.mp4", 1, now - 60_000);
    const two = await seedQueued("two.mp4", 2, now - 30_000);

    // Until the edge has done the cancel, every read of the jobs fails: what the rows show at the end can only come
    // from a read made after it (a poll that happened to be under way at the click cannot fill them in).
    let cancelled = false;
    let rowsLoaded = false;
    await page.route(
      (url) => url.pathname === "/api/jobs" || url.pathname.startsWith("/api/jobs/"),
      async (route) => {
        const req = route.request();
        if (req.method() === "POST" && new URL(req.url()).pathname === "/api/jobs/cancel") {
          const res = await route.fetch();
          cancelled = true;
          return route.fulfill({ response: res });
        }
        if (req.method() === "GET" && !cancelled && rowsLoaded) return route.abort("connectionreset");
        return route.fallback();
      },
    );
    await openJobs(page);
    rowsLoaded = true;
    expect(await listedIds(page)).toEqual([two, one]);
    const row = (id: string) => page.locator(`#job-list > li[data-job-id="${id}"]`);
    for (const id of [one, two]) {
      expect(await row(id).locator(".badge").textContent()).toBe("Queued");
      expect(await row(id).locator(".job-expiry").textContent()).toBe("");
      await row(id).getByRole("checkbox").check();
    }
    await page.getByRole("button", { name: "Cancel selected (2)" }).click();
    await page.getByRole("dialog", { name: "Cancel 2 jobs?" }).getByRole("button", { name: "Cancel 2 jobs" }).click();

    for (const [id, n] of [[one, 1], [two, 2]] as const) {
      await expect.poll(() => row(id).locator(".job-expiry").textContent(), { timeout: 10_000 }).toMatch(/^ · Expires in \d+ h \d+ min$/);
      expect(await row(id).locator(".badge").textContent()).toBe(`Cancelled (0/${n})`);
    }
    expect(cancelled).toBe(true);
    expect(page.url()).toBe(`${suite.ui.url}/jobs`);
    await context.close();
  }, 60_000);

  it("shows a job started elsewhere once the tab is shown again, even when nothing was running, and follows it from then on", async () => {
    const { context, page } = await suite.newUser("elsewhere");
    const owner = await userId(context);
    const earlier = await seed(owner, "earlier.mp4", Date.now() - 600_000, true);
    await openJobs(page);
    expect(await listedIds(page)).toEqual([earlier]);

    const clip = await readFile(await makeClip(suite.dir, "elsewhere.mp4", 2));
    const { id } = await apiOf(context, suite.ui.url).createJob({ name: "elsewhere.mp4", buffer: clip }, 1);

    // The user switches to another tab and back: the page sees its visibility go hidden, then visible.
    await page.evaluate(() => {
      const show = (state: "hidden" | "visible") => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
        Object.defineProperty(document, "hidden", { configurable: true, get: () => state === "hidden" });
        document.dispatchEvent(new Event("visibilitychange"));
      };
      show("hidden");
      show("visible");
      // Back to the browser's own (the page is in fact visible).
      delete (document as { visibilityState?: unknown }).visibilityState;
      delete (document as { hidden?: unknown }).hidden;
    });
    await expect.poll(() => listedIds(page), { timeout: 10_000 }).toEqual([id, earlier]);
    const row = page.locator(`#job-list > li[data-job-id="${id}"]`);
    expect(await row.locator(".badge").textContent()).toBe("Queued");

    // Polling runs again for the active job: its cancel (made outside this page) shows in place.
    const cancel = await requestOf(context).post(`${suite.ui.url}/api/jobs/${id}/cancel`, { headers: { origin: suite.ui.url }, data: {} });
    expect(cancel.status()).toBe(200);
    await expect.poll(() => row.locator(".badge").textContent(), { timeout: 30_000 }).toBe("Cancelled (0/1)");
    await context.close();
  }, 120_000);
});
