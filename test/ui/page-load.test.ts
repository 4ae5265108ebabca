import { readFile } from "node:fs/promises";
import type { Page, Route } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { apiOf, fulfillRateLimited, makeClip, uiSuite } from "./helpers";

/**
 * A page's first requests (the signed-in user, the job on a job page) meeting an edge in trouble, against the real
 * stack without a runner. The trouble is made with page.route, so how many answers fail is the test's choice.
 */
describe("loading a page while the edge is in trouble", () => {
  const suite = uiSuite({ runners: 0 });
  let clip: Buffer;
  beforeAll(async () => {
    clip = await readFile(await makeClip(suite.dir, "load.mp4", 2));
  }, 60_000);

  const unavailable = (route: Route) =>
    route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ error: { code: "unavailable", message: "Try later" } }) });

  /** Times (ms) of the page's GETs of `path`. */
  function requestsOf(page: Page, path: string): number[] {
    const times: number[] = [];
    page.on("request", (req) => {
      if (req.method() === "GET" && new URL(req.url()).pathname === path) times.push(Date.now());
    });
    return times;
  }

  it("loads the page when the signed-in user's first two requests get a 503", async () => {
    const { context, page, email } = await suite.newUser("me-flaky");
    await page.route(`${suite.ui.url}/api/me`, unavailable, { times: 2 });
    const mes = requestsOf(page, "/api/me");
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
    expect(mes).toHaveLength(3);
    expect(await page.locator("#nav-user").textContent()).toBe(email);
    expect(await page.locator("#page-message").isVisible()).toBe(false);
    await context.close();
  }, 60_000);

  it("waits for a 429's Retry-After before asking for the signed-in user again", async () => {
    const { context, page, email } = await suite.newUser("me-busy");
    let refusedAt = 0;
    await page.route(
      `${suite.ui.url}/api/me`,
      async (route) => {
        // Before the answer goes: the page's wait starts once it has it, so no sooner than this.
        refusedAt = Date.now();
        await fulfillRateLimited(route);
      },
      { times: 1 },
    );
    const mes = requestsOf(page, "/api/me");
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
    expect(mes).toHaveLength(2);
    expect(mes[1]! - refusedAt).toBeGreaterThanOrEqual(1_990);
    expect(await page.locator("#nav-user").textContent()).toBe(email);
    await context.close();
  }, 60_000);

  /**
   * Opens `pagePath` while `apiPath` answers 503: the page, after its retries, explains it in words in `messageSel`
   * (no route strings); once the edge recovers, Try again loads the page and the message goes.
   */
  async function downThenTryAgain(page: Page, apiPath: string, pagePath: string, messageSel: string) {
    const api = `${suite.ui.url}${apiPath}`;
    await page.route(api, unavailable);
    const tries = requestsOf(page, apiPath);
    await page.goto(`${suite.ui.url}${pagePath}`);
    await page.waitForSelector("body[data-ready=error]", { timeout: 30_000 });
    const message = page.locator(messageSel);
    expect(await message.isVisible()).toBe(true);
    const text = (await message.textContent()) ?? "";
    expect(text).toMatch(/^Could not load this page: The server had a problem \(503\)\. Please try again\./);
    expect(text).not.toContain("/api");
    expect(tries.length).toBeGreaterThan(1);

    await page.unroute(api);
    await message.getByRole("button", { name: "Try again" }).click();
    await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
    expect(await message.isVisible()).toBe(false);
  }

  it("explains in words that the page could not be loaded while the edge answers 503, and loads it with Try again once it recovers", async () => {
    const { context, page, email } = await suite.newUser("me-down");
    await downThenTryAgain(page, "/api/me", "/jobs", "#page-message");
    expect(await page.locator("#nav-user").textContent()).toBe(email);
    await expect.poll(() => page.locator("#jobs-empty").isVisible()).toBe(true);
    await context.close();
  }, 90_000);

  it("explains in words that a job could not be loaded while the edge answers 503, and shows it with Try again once it recovers", async () => {
    const { context, page } = await suite.newUser("job-down");
    const { id } = await apiOf(context, suite.ui.url).createJob({ name: "load.mp4", buffer: clip }, 1);
    await downThenTryAgain(page, `/api/jobs/${id}`, `/jobs/${id}`, "#job-message");
    expect(await page.locator("#job-title").textContent()).toBe("load.mp4");
    expect(await page.locator(".job-summary .badge").textContent()).toBe("Queued");
    await context.close();
  }, 90_000);
});
