import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { apiOf, type JobJson, makeClip, probeVideo, screenshot, uiSuite, until, requestOf } from "./helpers";
import { readStoredZip } from "./zip";

/**
 * The cancel story of issue 5 end to end: real stack with ONE real runner and real FFmpeg. Small clips keep the
 * 2-core machine responsive; encodes read their source in real time, so a variation is "running" for as long as its
 * clip plays, not for as long as this machine happens to take to encode it.
 */
describe("web UI with a real runner", () => {
  const suite = uiSuite({ runners: 1, runnerEnv: { POLL_MS: "200" }, realTimeEncodes: true });

  const running = (job: JobJson) => job.files.flatMap((f) => f.variations ?? []).filter((v) => v.status === "running").length;

  it(
    "uploads 4 variations, cancels from the list mid-run to Cancelled (k/4) in gray, and the ZIP holds exactly k MP4s",
    async () => {
      const { context, page } = await suite.newUser("run", { contextOptions: { acceptDownloads: true } });
      const api = apiOf(context, suite.ui.url);
      // 640x360 × 8 s: small, and each variation encodes for 8 s (real time), long enough for a person (and this test)
      // to cancel mid-run.
      const clip = await makeClip(suite.dir, "ad-spot.mp4", 8, "640x360");

      await page.goto(`${suite.ui.url}/`);
      await page.waitForSelector("body[data-ready=true]");
      await page.setInputFiles("#file-input", clip);
      await page.getByLabel("Variations per video").fill("4");
      await page.getByRole("button", { name: "Start job" }).click();
      await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 30_000 });
      const id = page.url().split("/").pop()!;
      await page.waitForSelector("body[data-ready=true]");
      // Progress is visible while the runner works: a running variation shows its bar.
      await page.locator('.variation[data-status="running"] progress').first().waitFor({ state: "visible", timeout: 60_000 });
      await screenshot(page, "detail-running");

      await page.goto(`${suite.ui.url}/jobs`);
      await page.waitForSelector("body[data-ready=true]");
      const card = page.locator(`.job-card[data-job-id="${id}"]`);
      expect(await card.locator(".badge").textContent()).toBe("Processing");
      await screenshot(page, "list-processing");
      await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      // The cancel's answer is held too, until the list has shown the end: what the list shows meanwhile comes from
      // its polls alone (the answer can come before or after them otherwise; the cancel waits for the runner).
      let answer!: () => void;
      const answerGate = new Promise<void>((r) => (answer = r));
      await page.route("**/api/jobs/*/cancel", async (route) => {
        await gate;
        const response = await route.fetch();
        await answerGate;
        await route.fulfill({ response });
      });
      // Right after the first variation completes, with the next one running: at least two more encodes of 8 s each
      // before the job could be Completed. Seen through the API the page polls.
      await until("one completed and one running variation", async () => {
        const job = await api.job(id);
        return job.completedVariations >= 1 && running(job) >= 1 ? job : undefined;
      }, 90_000, 50);
      await card.getByRole("button", { name: /^Cancel/ }).click();
      const dialog = page.getByRole("dialog", { name: "Cancel this job?" });
      await dialog.getByLabel("Reason (optional)").fill("started the wrong cut");
      await dialog.getByRole("button", { name: "Cancel job" }).click();
      const button = card.locator(".cancel-button");
      await expect.poll(() => button.textContent()).toMatch(/^Cancelling…/);
      expect(await button.isDisabled()).toBe(true);
      release();

      const badge = card.locator(".badge");
      await expect.poll(() => badge.textContent(), { timeout: 30_000 }).toMatch(/^Cancelled \([1-3]\/4\)$/);
      const k = Number(/\((\d)\/4\)/.exec((await badge.textContent())!)![1]);
      expect(await badge.getAttribute("class")).toContain("badge-neutral");
      const [r, g, b] = (await badge.evaluate((el) => getComputedStyle(el).backgroundColor)).match(/\d+/g)!.map(Number) as [number, number, number];
      expect(Math.max(r, g, b) - Math.min(r, g, b)).toBeLessThanOrEqual(12); // gray, not red/green
      expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
      // The job ended: no "Cancelling…" button beside it, though the page's own cancel request has no answer yet.
      expect(await button.isVisible()).toBe(false);
      await screenshot(page, "list-cancelled");
      const answered = page.waitForResponse((res) => res.url().endsWith("/cancel"));
      answer();
      await answered;
      await page.unroute("**/api/jobs/*/cancel");

      const job = await api.job(id);
      expect(job.status).toBe("cancelled");
      expect(job.completedVariations).toBe(k);

      await card.getByRole("link", { name: "ad-spot.mp4" }).click();
      await page.waitForURL(`${suite.ui.url}/jobs/${id}`);
      await page.waitForSelector("body[data-ready=true]");
      expect(await page.locator(".job-summary .badge").textContent()).toBe(`Cancelled (${k}/4)`);
      expect(await page.locator(".job-summary .job-count").textContent()).toBe(`${k} of 4 variations completed`);
      const cancelled = page.locator('.times dd[data-term="cancelled"]');
      expect(await cancelled.locator("time").getAttribute("datetime")).toBe(job.cancelledAt);
      expect(await cancelled.textContent()).toContain("by you");
      expect(await cancelled.locator("q").textContent()).toBe("started the wrong cut");
      expect(await page.locator('.variation[data-status="completed"]').count()).toBe(k);
      await screenshot(page, "detail-cancelled");

      const downloading = page.waitForEvent("download");
      await page.getByRole("link", { name: "Download ZIP" }).click();
      const download = await downloading;
      const zipPath = join(suite.dir, "job.zip");
      await download.saveAs(zipPath);
      const all = readStoredZip(await readFile(zipPath));
      expect(all.slice(-2).map((e) => e.name)).toEqual(["manifest.json", "manifest.csv"]);
      const entries = all.slice(0, -2);
      expect(entries.length).toBe(k);
      for (const [i, entry] of entries.entries()) {
        expect(entry.name).toMatch(/^ad-spot\/ad-spot_var0[1-4]\.mp4$/);
        const out = join(suite.dir, `entry-${i}.mp4`);
        await writeFile(out, entry.data);
        const info = await probeVideo(out);
        expect(info.codec).toBe("h264");
        expect(info.duration).toBeGreaterThan(6);
      }
      await context.close();
    },
    240_000,
  );

  it("notifies when a watched job finishes while the tab is in the background", async () => {
    const { context, page } = await suite.newUser("notify", { contextOptions: { acceptDownloads: true, permissions: ["notifications"] } });
    // Record notifications as the page creates them (the real constructor still runs).
    await context.addInitScript(() => {
      const Real = window.Notification;
      const shown: { title: string; body?: string }[] = [];
      (window as unknown as { shown: typeof shown }).shown = shown;
      class Recorded extends Real {
        constructor(title: string, options?: NotificationOptions) {
          super(title, options);
          shown.push({ title, body: options?.body });
        }
      }
      Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
      window.Notification = Recorded;
    });
    const clip = await readFile(await makeClip(suite.dir, "short.mp4", 4));
    await page.goto(`${suite.ui.url}/jobs`);
    await page.waitForSelector("body[data-ready=true]");
    const toggle = page.locator("#notify-toggle");
    expect(await toggle.getAttribute("aria-pressed")).toBe("true");
    await toggle.click();
    expect(await toggle.getAttribute("aria-pressed")).toBe("false");
    await toggle.click();
    expect(await toggle.textContent()).toBe("Notifications: on");

    const { id } = await apiOf(context, suite.ui.url).createJob({ name: "short.mp4", buffer: clip }, 2);
    // Paused at once (one request, while the runner has at most started its first encode), so the job cannot
    // finish before the page watches it from the background; the test resumes it once the tab is hidden.
    const headers = { origin: suite.ui.url };
    const paused = await requestOf(context).post(`${suite.ui.url}/api/jobs/${id}/pause`, { headers });
    expect([200, 202]).toContain(paused.status());
    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    // Headless pages are always visible; this is the state a backgrounded tab reports.
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    expect((await requestOf(context).post(`${suite.ui.url}/api/jobs/${id}/resume`, { headers })).status()).toBe(200);
    const shown = await until(
      "a notification",
      async () => {
        const list = await page.evaluate(() => (window as unknown as { shown: { title: string; body?: string }[] }).shown);
        return list.length ? list : undefined;
      },
      60_000,
      250,
    );
    expect(shown).toEqual([{ title: "Job Completed", body: "short.mp4 — 2 of 2 variations completed" }]);
    await context.close();
  }, 120_000);

  it("lists the live runner on the admin runners page", async () => {
    const page = await suite.admin.newPage();
    await page.goto(`${suite.ui.url}/admin/runners`);
    await page.waitForSelector("body[data-ready=true]");
    const rows = page.locator("#runners-body tr[data-runner-id]");
    expect(await rows.count()).toBe(1);
    const cells = await rows.first().locator("td").allTextContents();
    expect(cells[1]).toMatch(/^\d+\.\d+\.\d+/); // version
    expect(cells[2]).toMatch(/^[01] \/ 1$/); // active / concurrency (one runner, default concurrency 1)
    expect(cells[3]).toMatch(/online$/);
    await screenshot(page, "admin-runners");
    await page.close();
  });
});
