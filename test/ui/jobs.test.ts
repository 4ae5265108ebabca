import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BrowserContext, Locator, Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { apiOf, fulfillRateLimited, login, makeClip, screenshot, TEST_PASSWORD, uiSuite, uniqueEmail, writeText } from "./helpers";

/**
 * The web UI in Chromium against the real stack (local libSQL server, wrangler dev, R2 persisted by miniflare)
 * with NO runner: every job stays queued until the UI cancels it, which makes the queued-job paths deterministic.
 * The running-job path (real runner, real FFmpeg) is in cancel-running.test.ts.
 */
describe("web UI without a runner", () => {
  const suite = uiSuite({ runners: 0 });
  const PASSWORD = TEST_PASSWORD;
  let clip: Buffer;
  beforeAll(async () => {
    clip = await readFile(await makeClip(suite.dir, "clip.mp4", 4));
  }, 60_000);

  /**
   * Pauses each `POST /api/jobs` once the edge has answered it (the job exists by then) and drops the answers `drop`
   * picks (n counts the creates from 1) as a reset connection would; records each create's Idempotency-Key and the
   * id of the first job created.
   */
  async function loseCreateAnswers(context: BrowserContext, page: Page, drop: (n: number) => boolean, urlPattern = "*/api/jobs") {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Fetch.enable", { patterns: [{ urlPattern, requestStage: "Response" }] });
    const seen = { keys: [] as string[], createdId: null as string | null, stop: () => cdp.send("Fetch.disable") };
    cdp.on("Fetch.requestPaused", (ev) => {
      void (async () => {
        if (ev.request.method !== "POST") return cdp.send("Fetch.continueRequest", { requestId: ev.requestId });
        const header = Object.entries(ev.request.headers).find(([name]) => name.toLowerCase() === "idempotency-key");
        seen.keys.push(header?.[1] ?? "");
        if (!drop(seen.keys.length)) return cdp.send("Fetch.continueRequest", { requestId: ev.requestId });
        const { body, base64Encoded } = await cdp.send("Fetch.getResponseBody", { requestId: ev.requestId });
        seen.createdId ??= (JSON.parse(base64Encoded ? Buffer.from(body, "base64").toString("utf8") : body) as { id: string }).id;
        await cdp.send("Fetch.failRequest", { requestId: ev.requestId, errorReason: "ConnectionReset" });
      })();
    });
    return seen;
  }

  /** 65 MiB: a real clip followed by padding, above the single-request threshold (64 MiB): it goes up in parts. */
  async function bigClip(name: string): Promise<string> {
    const big = Buffer.alloc(65 * 1024 * 1024);
    clip.copy(big);
    const path = join(suite.dir, name);
    await writeFile(path, big);
    return path;
  }

  /** The signed-in user's job ids, as GET /api/jobs lists them. */
  async function jobIds(page: Page): Promise<string[]> {
    return page.evaluate(async () => ((await (await fetch("/api/jobs")).json()) as { jobs: { id: string }[] }).jobs.map((j) => j.id));
  }

  function row(page: Page, jobId: string): Locator {
    return page.locator(`.job-card[data-job-id="${jobId}"]`);
  }

  async function isGray(badge: Locator): Promise<boolean> {
    const bg = await badge.evaluate((el) => getComputedStyle(el).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g)!.map(Number) as [number, number, number];
    return Math.max(r, g, b) - Math.min(r, g, b) <= 12;
  }

  it("sends a visitor without a session to the login page, explains bad credentials, then returns to the page asked for", async () => {
    const email = uniqueEmail("login");
    await apiOf(suite.admin, suite.ui.url).createUser(email, PASSWORD);
    const context = await suite.browser.newContext();
    const page = await context.newPage();
    await page.goto(`${suite.ui.url}/tokens`);
    await page.waitForURL(/\/login\?next=%2Ftokens$/);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => page.getByRole("alert").filter({ hasText: "Wrong email or password." }).isVisible()).toBe(true);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForURL(`${suite.ui.url}/tokens`);
    await page.waitForSelector("body[data-ready=true]");
    expect(await page.locator("#nav-user").textContent()).toBe(email);
    // Admin links stay hidden for a plain user.
    expect(await page.getByRole("link", { name: "Runners" }).isVisible()).toBe(false);
    await context.close();
  });

  it("refuses a text file with a clear message, then uploads a clip with 4 variations showing per-file progress", async () => {
    const { context, page } = await suite.newUser("upload");
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", await writeText(suite.dir, "notes.txt", "just some notes\n"));
    const alert = page.locator("#upload-message");
    await expect.poll(() => alert.textContent()).toBe("“notes.txt” is not a supported video. Use MP4, MOV, M4V, WebM or MKV videos.");
    // Same text under a video name: refused by its content, not its name.
    await page.setInputFiles("#file-input", await writeText(suite.dir, "fake.mp4", "not a video at all\n"));
    await expect.poll(() => alert.textContent()).toMatch(/^“fake\.mp4” does not look like a video file\./);
    expect(await page.locator(".upload-item").count()).toBe(0);
    expect(await page.getByRole("button", { name: "Start job" }).isDisabled()).toBe(true);
    await screenshot(page, "upload-refused");

    const clipPath = join(suite.dir, "progress-clip.mp4");
    await writeFile(clipPath, clip);
    await page.setInputFiles("#file-input", clipPath);
    await expect.poll(() => page.locator(".upload-item").count()).toBe(1);
    expect(await alert.isVisible()).toBe(false);
    await page.getByLabel("Variations per video").fill("4");
    // Slow the uplink so the progress bar is observable between 0 and 100 %.
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 48 * 1024 });
    await page.getByRole("button", { name: "Start job" }).click();
    const bar = page.getByRole("progressbar", { name: "Upload progress of progress-clip.mp4" });
    await page.waitForFunction(
      () => {
        const el = document.querySelector<HTMLProgressElement>(".upload-item progress");
        return !!el && el.value > 0 && el.value < 100;
      },
      undefined,
      { timeout: 20_000, polling: 50 },
    );
    expect(await bar.isVisible()).toBe(true);
    await screenshot(page, "upload-progress");
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 30_000 });
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.waitForSelector("body[data-ready=true]");
    expect(await page.locator(".job-summary .job-count").textContent()).toBe("0 of 4 variations completed");
    expect(await page.locator(".variation").count()).toBe(4);
    expect(await page.locator("#job-title").textContent()).toBe("progress-clip.mp4");
    await context.close();
  });

  it("retries a job upload whose answer was lost with the same Idempotency-Key and opens the one job it made", async () => {
    const { context, page } = await suite.newUser("lost-answer");
    const clipPath = join(suite.dir, "lost-answer.mp4");
    await writeFile(clipPath, clip);
    // The first answer is dropped as a reset connection would drop it; the later ones go through.
    const creates = await loseCreateAnswers(context, page, (n) => n === 1);
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", clipPath);
    await page.getByLabel("Variations per video").fill("2");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 30_000 });
    expect(creates.createdId).not.toBeNull();
    expect(page.url()).toBe(`${suite.ui.url}/jobs/${creates.createdId}`);
    expect(creates.keys).toHaveLength(2);
    expect(creates.keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(creates.keys[1]).toBe(creates.keys[0]);
    await creates.stop();
    expect(await jobIds(page)).toEqual([creates.createdId]);
    await context.close();
  });

  it("tells a user whose job's create got no answer on any try that the job may exist, and the next Start job opens that one job", async () => {
    const { context, page } = await suite.newUser("lost-every");
    const clipPath = join(suite.dir, "lost-every.mp4");
    await writeFile(clipPath, clip);
    // Every try of the first click reaches the edge (the first one makes the job) and loses its answer.
    let dropping = true;
    const creates = await loseCreateAnswers(context, page, () => dropping);
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", clipPath);
    await page.getByLabel("Variations per video").fill("2");
    await page.getByRole("button", { name: "Start job" }).click();
    const alert = page.locator("#upload-message");
    await expect.poll(() => alert.textContent(), { timeout: 30_000 }).toMatch(
      /^No answer from the server: Could not reach the server\..* The job may have been made anyway: Start job again with the same videos and settings, and you get that job, not a second one\.$/,
    );
    expect(creates.keys).toHaveLength(3);
    expect(creates.createdId).not.toBeNull();

    dropping = false;
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(`${suite.ui.url}/jobs/${creates.createdId}`, { timeout: 30_000 });
    expect(creates.keys).toHaveLength(4);
    expect(new Set(creates.keys).size).toBe(1);
    await creates.stop();
    expect(await jobIds(page)).toEqual([creates.createdId]);
    await context.close();
  });

  it("reports a job refused for the storage quota (429 quota_exceeded) at once with the server's message, without trying again", async () => {
    const { context, page } = await suite.newUser("quota");
    const clipPath = join(suite.dir, "quota.mp4");
    await writeFile(clipPath, clip);
    const creates: number[] = [];
    await page.route(`${suite.ui.url}/api/jobs`, (route) => {
      if (route.request().method() !== "POST") return route.fallback();
      creates.push(Date.now());
      return route.fulfill({
        status: 429,
        contentType: "application/json",
        body: JSON.stringify({ error: { code: "quota_exceeded", message: "Storage quota reached: delete finished jobs to make room." } }),
      });
    });
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", clipPath);
    await page.getByRole("button", { name: "Start job" }).click();
    const alert = page.locator("#upload-message");
    await expect.poll(() => alert.textContent(), { timeout: 15_000 }).toBe("Upload failed: Storage quota reached: delete finished jobs to make room.");
    // The message comes after the last try: one request means none was retried.
    expect(creates).toHaveLength(1);
    expect(await page.locator(".upload-item").textContent()).not.toContain("trying again");
    expect(await page.getByRole("button", { name: "Start job" }).isEnabled()).toBe(true);
    await page.unroute(`${suite.ui.url}/api/jobs`);
    expect(await jobIds(page)).toEqual([]);
    await context.close();
  });

  it("waits for a 429's Retry-After before sending the job's create again, then opens the job", async () => {
    const { context, page } = await suite.newUser("busy");
    const clipPath = join(suite.dir, "busy.mp4");
    await writeFile(clipPath, clip);
    const sent: number[] = [];
    let refusedAt = 0;
    await page.route(`${suite.ui.url}/api/jobs`, async (route) => {
      if (route.request().method() !== "POST") return route.fallback();
      sent.push(Date.now());
      if (sent.length > 1) return route.fallback();
      // Before the answer goes: the page's wait starts once it has it, so no sooner than this.
      refusedAt = Date.now();
      await fulfillRateLimited(route);
    });
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", clipPath);
    await page.getByRole("button", { name: "Start job" }).click();
    // Shown while it waits (checked after the timing, which is what matters).
    const state = page.locator(".upload-item .upload-state");
    const waitShown = expect.poll(() => state.textContent().catch(() => null), { timeout: 10_000 }).toBe("Server busy: trying again in 2 s (2 of 3)");
    waitShown.catch(() => {}); // awaited below; not an unhandled rejection if a check before it fails
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 30_000 });
    expect(sent).toHaveLength(2);
    expect(refusedAt).toBeGreaterThan(0);
    // The page's wait starts once it has the answer; the margin covers only the time between the browser taking the
    // answer and playwright saying so (a wait of the old 1 s would be 1 s short).
    expect(sent[1]! - refusedAt).toBeGreaterThanOrEqual(1_990);
    await waitShown;
    const id = page.url().split("/").pop()!;
    expect(await jobIds(page)).toEqual([id]);
    await context.close();
  });

  it("sends the chosen intensity and effect families with the job and shows them on the job page; none chosen is refused before sending", async () => {
    const { context, page } = await suite.newUser("effects");
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    // Today's look is preselected.
    expect(await page.getByLabel("Color", { exact: true }).isChecked()).toBe(true);
    expect(await page.getByLabel("Zoom", { exact: true }).isChecked()).toBe(true);
    expect(await page.getByLabel("Mirror", { exact: true }).isChecked()).toBe(false);
    expect(await page.getByLabel("Intensity").inputValue()).toBe("subtle");
    const clipPath = join(suite.dir, "effects-clip.mp4");
    await writeFile(clipPath, clip);
    await page.setInputFiles("#file-input", clipPath);
    await expect.poll(() => page.locator(".upload-item").count()).toBe(1);

    await page.getByLabel("Color", { exact: true }).uncheck();
    await page.getByLabel("Zoom", { exact: true }).uncheck();
    await page.getByRole("button", { name: "Start job" }).click();
    await expect.poll(() => page.locator("#upload-message").textContent()).toBe("Effects: choose at least one.");
    expect(page.url()).toBe(`${suite.ui.url}/`);

    await page.getByLabel("Color", { exact: true }).check();
    // The refusal goes with the change that answers it.
    await expect.poll(() => page.locator("#upload-message").isVisible()).toBe(false);
    await page.getByLabel("Mirror", { exact: true }).check();
    await page.getByLabel("Intensity").selectOption("medium");
    await page.getByLabel("Variations per video").fill("1");
    await screenshot(page, "upload-effects");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 30_000 });
    await page.waitForSelector("body[data-ready=true]");
    await expect.poll(() => page.locator('dd[data-term="effects"]').textContent()).toBe("Medium: color, mirror");
    await context.close();
  });

  it("cancels a queued job from the list at once: Cancelling… then Cancelled (0/3) in gray, in place", async () => {
    const { context, page } = await suite.newUser("queued");
    const api = apiOf(context, suite.ui.url);
    const { id } = await api.createJob({ name: "queued.mp4", buffer: clip }, 3);
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]");
    const card = row(page, id);
    expect(await card.locator(".badge").textContent()).toBe("Queued");
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));

    // Hold the cancel request until "Cancelling…" has been seen, then let it through to the real edge.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await page.route("**/api/jobs/*/cancel", async (route) => {
      await gate;
      await route.continue();
    });
    await card.getByRole("button", { name: /^Cancel/ }).click();
    const dialog = page.getByRole("dialog", { name: "Cancel this job?" });
    await dialog.getByLabel("Reason (optional)").fill("wrong source <b>file</b>");
    await screenshot(page, "dialog");
    await dialog.getByRole("button", { name: "Cancel job" }).click();
    const button = card.locator(".cancel-button");
    await expect.poll(() => button.textContent()).toMatch(/^Cancelling…/);
    expect(await button.isDisabled()).toBe(true);
    release();
    await expect.poll(() => card.locator(".badge").textContent()).toBe("Cancelled (0/3)");
    expect(await card.locator(".badge").getAttribute("class")).toContain("badge-neutral");
    expect(await isGray(card.locator(".badge"))).toBe(true);
    expect(await button.isVisible()).toBe(false);
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
    expect(page.url()).toBe(`${suite.ui.url}/jobs`);
    await screenshot(page, "list-cancelled-queued");
    await page.unroute("**/api/jobs/*/cancel");

    const job = await api.job(id);
    expect(job.status).toBe("cancelled");
    expect(job.cancelReason).toBe("wrong source <b>file</b>");
    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    const cancelled = page.locator('.times dd[data-term="cancelled"]');
    expect(await cancelled.locator("time").getAttribute("datetime")).toBe(job.cancelledAt);
    // The reason is shown as text, never parsed as markup.
    expect(await cancelled.locator("q").textContent()).toBe("wrong source <b>file</b>");
    expect(await cancelled.locator("b").count()).toBe(0);
    expect(await page.getByRole("link", { name: "Download ZIP" }).isVisible()).toBe(false);
    await context.close();
  });

  it("shows an error and re-enables Cancel when the edge answers 503, and the retry then succeeds", async () => {
    const { context, page } = await suite.newUser("fail503");
    const api = apiOf(context, suite.ui.url);
    const { id } = await api.createJob({ name: "flaky.mp4", buffer: clip }, 2);
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]");
    const card = row(page, id);
    await page.route(
      "**/api/jobs/*/cancel",
      (route) =>
        route.fulfill({
          status: 503,
          contentType: "application/json",
          body: JSON.stringify({ error: { code: "unavailable", message: "Service unavailable" } }),
        }),
      { times: 1 },
    );
    const button = card.locator(".cancel-button");
    await button.click();
    await page.getByRole("dialog").getByRole("button", { name: "Cancel job" }).click();
    const error = card.getByRole("alert");
    await expect.poll(() => error.textContent()).toBe("Could not cancel: The server had a problem (503). Please try again.");
    expect(await button.isEnabled()).toBe(true);
    expect(await button.textContent()).toMatch(/^Cancel job/);
    expect(await card.locator(".badge").textContent()).toBe("Queued");
    expect((await api.job(id)).status).toBe("queued");
    await screenshot(page, "cancel-error");

    await button.click();
    await page.getByRole("dialog").getByRole("button", { name: "Cancel job" }).click();
    await expect.poll(() => card.locator(".badge").textContent()).toBe("Cancelled (0/2)");
    expect(await error.isVisible()).toBe(false);
    await context.close();
  });

  it("shows a job to its owner only: another user sees neither the list entry nor the detail page", async () => {
    const owner = await suite.newUser("owner");
    const { id } = await apiOf(owner.context, suite.ui.url).createJob({ name: "private.mp4", buffer: clip }, 1);
    const other = await suite.newUser("other");
    await other.page.goto(`${suite.ui.url}/jobs`);
    await other.page.waitForSelector("body[data-ready=true]");
    expect(await row(other.page, id).count()).toBe(0);
    expect(await other.page.locator("#jobs-empty").isVisible()).toBe(true);
    await other.page.goto(`${suite.ui.url}/jobs/${id}`);
    await other.page.waitForSelector("body[data-ready]");
    expect(await other.page.locator("#job-message").textContent()).toBe("Job not found. It may have expired, or it belongs to someone else.");
    expect(await other.page.getByText("private.mp4").count()).toBe(0);
    await owner.context.close();
    await other.context.close();
  });

  it("keeps keyboard focus inside the cancel dialog, closes it with Esc, and cancels nothing", async () => {
    const { context, page } = await suite.newUser("keyboard");
    const api = apiOf(context, suite.ui.url);
    const { id } = await api.createJob({ name: "keys.mp4", buffer: clip }, 1);
    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    const opener = page.locator(".job-summary .cancel-button");
    await opener.focus();
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: "Cancel this job?" });
    await expect.poll(() => dialog.isVisible()).toBe(true);
    const focused = () => page.evaluate(() => document.activeElement?.textContent ?? document.activeElement?.id ?? "");
    // The safe choice has focus first, so Enter right away cannot cancel.
    expect(await focused()).toBe("Keep it running");
    await page.keyboard.press("Tab");
    expect(await focused()).toBe("Cancel job");
    await page.keyboard.press("Tab"); // wraps to the first control instead of leaving the dialog
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("cancel-reason");
    await page.keyboard.press("Shift+Tab");
    expect(await focused()).toBe("Cancel job");
    await page.keyboard.press("Escape");
    await expect.poll(() => dialog.isVisible()).toBe(false);
    expect(await page.evaluate(() => document.activeElement?.classList.contains("cancel-button"))).toBe(true);
    expect((await api.job(id)).status).toBe("queued");
    await context.close();
  });

  it("cancels several selected jobs together from the list", async () => {
    const { context, page } = await suite.newUser("bulk");
    const api = apiOf(context, suite.ui.url);
    const a = await api.createJob({ name: "a.mp4", buffer: clip }, 1);
    const b = await api.createJob({ name: "b.mp4", buffer: clip }, 2);
    const keep = await api.createJob({ name: "keep.mp4", buffer: clip }, 1);
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]");
    await row(page, a.id).getByRole("checkbox").check();
    await row(page, b.id).getByRole("checkbox").check();
    const bulk = page.getByRole("button", { name: "Cancel selected (2)" });
    await bulk.click();
    const dialog = page.getByRole("dialog", { name: "Cancel 2 jobs?" });
    await dialog.getByRole("button", { name: "Cancel 2 jobs" }).click();
    await expect.poll(() => row(page, a.id).locator(".badge").textContent()).toBe("Cancelled (0/1)");
    await expect.poll(() => row(page, b.id).locator(".badge").textContent()).toBe("Cancelled (0/2)");
    expect(await row(page, keep.id).locator(".badge").textContent()).toBe("Queued");
    expect((await api.job(keep.id)).status).toBe("queued");
    expect(await page.getByRole("button", { name: "Cancel selected" }).isDisabled()).toBe(true);
    await context.close();
  });

  it("sends a user whose session ended to the login page and back to the same job", async () => {
    const { context, page, email } = await suite.newUser("expired");
    const { id } = await apiOf(context, suite.ui.url).createJob({ name: "later.mp4", buffer: clip }, 1);
    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    await context.clearCookies();
    await page.locator(".job-summary .cancel-button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Cancel job" }).click();
    await page.waitForURL(/\/login\?/);
    expect(new URL(page.url()).searchParams.get("next")).toBe(`/jobs/${id}`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForURL(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    expect(await page.locator("#job-title").textContent()).toBe("later.mp4");
    await context.close();
  });

  it("answers a second click after a large job's create got no answer with the job it made, without uploading the file again", async () => {
    const { context, page } = await suite.newUser("lost-large");
    const bigPath = await bigClip("lost-large.mp4");
    const parts: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "PUT" && /\/api\/uploads\/[^/]+\/parts\/\d+$/.test(r.url())) parts.push(r.url());
    });
    // Every create of the first click reaches the edge and loses its answer (the first makes the job).
    let dropping = true;
    const creates = await loseCreateAnswers(context, page, () => dropping);
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", bigPath);
    await page.getByLabel("Variations per video").fill("2");
    await page.getByRole("button", { name: "Start job" }).click();
    const alert = page.locator("#upload-message");
    // The uploads are kept for the next click (a network failure, not a refusal).
    await expect.poll(() => alert.textContent(), { timeout: 120_000 }).toMatch(/^Upload stopped: Could not reach the server/);
    expect(creates.createdId).not.toBeNull();
    const sent = parts.length;
    expect(new Set(parts).size).toBe(9); // 65 MiB in 8 MiB parts (a part may have been retried)

    dropping = false;
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(`${suite.ui.url}/jobs/${creates.createdId}`, { timeout: 30_000 });
    expect(parts.length).toBe(sent);
    await creates.stop();
    expect(await jobIds(page)).toEqual([creates.createdId]);
    await context.close();
  });

  it("sends a large file through the multipart upload API and retries a part that failed", async () => {
    const { context, page } = await suite.newUser("multipart");
    const bigPath = await bigClip("big.mp4");
    const partRequests: string[] = [];
    let failed = false;
    await page.route("**/api/uploads/*/parts/*", async (route) => {
      const n = route.request().url().split("/").pop()!;
      partRequests.push(n);
      if (n === "2" && !failed) {
        failed = true;
        await route.fulfill({ status: 503, contentType: "application/json", body: '{"error":{"code":"unavailable","message":"try later"}}' });
        return;
      }
      await route.continue();
    });
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", bigPath);
    await page.getByLabel("Variations per video").fill("2");
    // Every text the file's state line shows is recorded as it changes (in the page, so no poll can miss a short
    // one); the exposed function outlives the navigation to the job page.
    const states: string[] = [];
    await page.exposeFunction("recordUploadState", (text: string) => void states.push(text));
    await page.evaluate(() => {
      const seen = (window as unknown as { recordUploadState: (t: string) => void }).recordUploadState;
      new MutationObserver(() => {
        const text = document.querySelector(".upload-state")?.textContent;
        if (text) seen(text);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 120_000 });
    expect(states.some((t) => t.includes("retrying part 2 (attempt 2 of 5)"))).toBe(true);
    await page.waitForSelector("body[data-ready=true]");
    expect(partRequests.filter((n) => n === "2").length).toBe(2);
    expect(new Set(partRequests).size).toBe(9); // 65 MiB in 8 MiB parts
    const id = page.url().split("/").pop()!;
    const job = await apiOf(context, suite.ui.url).job(id);
    expect(job.totalVariations).toBe(2);
    expect(await page.locator(".file .muted").first().textContent()).toBe("65 MB");
    await context.close();
  });

  it("ignores a video dropped on the page while an upload is under way: Start job stays disabled and one job is made", async () => {
    const { context, page } = await suite.newUser("drop-while-busy");
    const clipPath = join(suite.dir, "drop-busy.mp4");
    await writeFile(clipPath, clip);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route("**/api/jobs", async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      await held;
      await route.continue();
    });
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", clipPath);
    await page.getByLabel("Variations per video").fill("1");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.getByRole("button", { name: "Uploading…" }).waitFor();
    // A second video, with a real video's first bytes, dropped on the zone while the first request is held.
    await page.evaluate(async (head) => {
      const file = new File([new Uint8Array(head)], "second.mp4", { type: "video/mp4" });
      const dt = new DataTransfer();
      dt.items.add(file);
      document.getElementById("dropzone")!.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
      await new Promise((r) => setTimeout(r, 200));
    }, [...clip.subarray(0, 4096)]);
    expect(await page.locator(".upload-item").count()).toBe(1);
    expect(await page.getByRole("button", { name: "Uploading…" }).isDisabled()).toBe(true);
    release();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 60_000 });
    expect(await jobIds(page)).toHaveLength(1);
    await context.close();
  });

  it("continues a large upload where it stopped after the connection dropped: the next click sends only the missing parts", async () => {
    const { context, page } = await suite.newUser("resume-upload");
    const bigPath = await bigClip("big-resume.mp4");
    const starts: string[] = [];
    const sentParts: string[] = [];
    let dropPart3 = true;
    await page.route("**/api/uploads", async (route) => {
      if (route.request().method() === "POST") starts.push(route.request().url());
      await route.continue();
    });
    await page.route("**/api/uploads/*/parts/*", async (route) => {
      const n = route.request().url().split("/").pop()!;
      // Part 3 meets a dead connection every time until the network is "back".
      if (n === "3" && dropPart3) return route.abort("connectionreset");
      const res = await route.fetch();
      if (res.status() === 200) sentParts.push(n);
      await route.fulfill({ response: res });
    });
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", bigPath);
    await page.getByLabel("Variations per video").fill("1");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.getByText(/Upload stopped: .*continue where it stopped/).waitFor({ timeout: 90_000 });
    expect(await page.locator(".upload-state").first().textContent()).toMatch(/^Paused at \d+ %$/);
    const before = [...sentParts];
    expect(before).not.toContain("3");

    dropPart3 = false;
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 120_000 });
    // One upload for the file; every part went up exactly once, the ones sent before the drop were not sent again.
    expect(starts).toHaveLength(1);
    expect([...sentParts].sort()).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    expect(await jobIds(page)).toHaveLength(1);
    await context.close();
  });

  it("starts a large file's upload once when the first answer is lost: the retry carries the same Idempotency-Key", async () => {
    const { context, page } = await suite.newUser("lost-upload-start");
    const bigPath = await bigClip("big-lost-start.mp4");
    const starts = await loseCreateAnswers(context, page, (n) => n === 1, "*/api/uploads");
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", bigPath);
    await page.getByLabel("Variations per video").fill("1");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 120_000 });
    await starts.stop();
    expect(starts.keys).toHaveLength(2);
    expect(starts.keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(starts.keys[1]).toBe(starts.keys[0]);
    expect(starts.createdId).not.toBeNull();
    expect(await jobIds(page)).toHaveLength(1);
    await context.close();
  });

  it("lets an admin create a user on the users page, who can then log in", async () => {
    const page = await suite.admin.newPage();
    await page.goto(`${suite.ui.url}/admin/users`);
    await page.waitForSelector("body[data-ready=true]");
    const email = uniqueEmail("created");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Create user" }).click();
    await expect.poll(() => page.locator("#user-message").textContent()).toBe(`Created ${email}.`);
    await expect.poll(() => page.getByRole("cell", { name: email, exact: true }).count()).toBe(1);
    await screenshot(page, "admin-users");
    await page.close();
    const context = await suite.browser.newContext();
    await login(await context.newPage(), suite.ui.url, email, PASSWORD);
    await context.close();
  });

  it("creates an API token shown once that works as a Bearer token, and revokes it", async () => {
    const { context, page } = await suite.newUser("tokens");
    await page.goto(`${suite.ui.url}/tokens`);
    await page.waitForSelector("body[data-ready=true]");
    await page.getByLabel("Token name").fill("nightly <batch>");
    await page.getByRole("button", { name: "Create token" }).click();
    const value = page.locator("#token-value");
    await expect.poll(() => value.inputValue()).not.toBe("");
    const token = await value.inputValue();
    await expect.poll(() => page.getByRole("cell", { name: "nightly <batch>", exact: true }).count()).toBe(1);
    const authed = await fetch(`${suite.ui.url}/api/jobs`, { headers: { authorization: `Bearer ${token}` } });
    expect(authed.status).toBe(200);
    await screenshot(page, "tokens");
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Revoke token nightly <batch>" }).click();
    await expect.poll(() => page.getByText("No tokens yet.").isVisible()).toBe(true);
    expect((await fetch(`${suite.ui.url}/api/jobs`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    await context.close();
  });
});
