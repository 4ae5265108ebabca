import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { apiOf, type JobJson, makeClip, screenshot, uiSuite, until } from "./helpers";
import { readStoredZip } from "./zip";

/**
 * Pause / resume / continue a cancelled job / more variations from the job page, end to end: real stack with one
 * real runner and real FFmpeg. The requests are held at the browser until the test has seen the in-flight label,
 * so nothing depends on how fast the runner stops; encodes read their source in real time (8 s per variation), so
 * the job is still running when the pause or cancel lands, however fast this machine encodes.
 */
describe("job controls with a real runner", () => {
  const suite = uiSuite({ runners: 1, runnerEnv: { POLL_MS: "200" }, realTimeEncodes: true });

  const running = (job: JobJson) => job.files.flatMap((f) => f.variations ?? []).filter((v) => v.status === "running").length;

  /** Holds POST /api/jobs/*\/<action> until the returned release is called. */
  async function hold(page: Page, action: string): Promise<() => void> {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await page.route(`**/api/jobs/*/${action}`, async (route) => {
      await gate;
      await route.continue();
    });
    return release;
  }

  async function openJob(page: Page, id: string) {
    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
  }

  it("chooses effects, pauses the running job to Paused (k/N) in gray with Tab and Shift+Tab wrapping between the dialog's buttons, resumes it to Completed, downloads the ZIP with its manifest, then adds more variations", async () => {
    const { context, page } = await suite.newUser("pause", { contextOptions: { acceptDownloads: true } });
    const api = apiOf(context, suite.ui.url);
    await page.goto(`${suite.ui.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await page.setInputFiles("#file-input", await makeClip(suite.dir, "promo.mp4", 8, "640x360"));
    await page.getByLabel("Variations per video").fill("3");
    await page.getByLabel("Intensity").selectOption("medium");
    await page.getByLabel("Mirror", { exact: true }).check();
    await page.getByRole("button", { name: "Start job" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-z]+$/, { timeout: 30_000 });
    const id = page.url().split("/").pop()!;
    await page.waitForSelector("body[data-ready=true]");
    await until("a running variation", async () => ((j) => (running(j) > 0 ? j : undefined))(await api.job(id)), 90_000, 50);

    const release = await hold(page, "pause");
    await page.locator(".pause-button").click();
    const dialog = page.getByRole("dialog", { name: "Pause this job?" });
    // The pause dialog hides its reason field; keyboard focus must wrap over the two buttons it does show.
    const focused = () => page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.action ?? document.activeElement?.tagName);
    await expect.poll(focused).toBe("keep");
    await page.keyboard.press("Tab");
    expect(await focused()).toBe("confirm");
    await page.keyboard.press("Tab");
    expect(await focused()).toBe("keep");
    await page.keyboard.press("Shift+Tab");
    expect(await focused()).toBe("confirm");
    expect(await dialog.isVisible()).toBe(true);
    await dialog.getByRole("button", { name: "Pause job" }).click();
    const button = page.locator(".pause-button");
    await expect.poll(() => button.textContent()).toMatch(/^Pausing…/);
    expect(await button.isDisabled()).toBe(true);
    release();

    const badge = page.locator(".job-summary .badge");
    await expect.poll(() => badge.textContent(), { timeout: 30_000 }).toMatch(/^Paused \([0-2]\/3\)$/);
    expect(await badge.getAttribute("class")).toContain("badge-neutral");
    await expect.poll(() => button.textContent(), { timeout: 30_000 }).toMatch(/^Resume/);
    expect(running(await api.job(id))).toBe(0);
    await screenshot(page, "detail-paused");
    await page.unroute("**/api/jobs/*/pause");

    await button.click();
    await page.getByRole("dialog", { name: "Resume this job?" }).getByRole("button", { name: "Resume job" }).click();
    await expect.poll(() => badge.textContent(), { timeout: 120_000 }).toBe("Completed");
    expect((await api.job(id)).completedVariations).toBe(3);

    // The ZIP: three videos, then the manifest naming the chosen effects and every entry's sha256.
    const downloading = page.waitForEvent("download");
    await page.getByRole("link", { name: "Download ZIP" }).click();
    const zipPath = join(suite.dir, `${id}.zip`);
    await (await downloading).saveAs(zipPath);
    const entries = readStoredZip(await readFile(zipPath));
    expect(entries.map((e) => e.name)).toEqual(["promo/promo_var01.mp4", "promo/promo_var02.mp4", "promo/promo_var03.mp4", "manifest.json", "manifest.csv"]);
    const manifest = JSON.parse(entries[3]!.data.toString("utf8")) as { effects: unknown; entries: { file: string; sha256: string; params: { mirror?: unknown } }[] };
    expect(manifest.effects).toEqual({ intensity: "medium", families: ["color", "zoom", "mirror"] });
    for (const [i, e] of manifest.entries.entries()) {
      expect(e.file).toBe(entries[i]!.name);
      expect(e.sha256).toBe(createHash("sha256").update(entries[i]!.data).digest("hex"));
    }

    // More variations on the finished job: numbered after the existing ones.
    await page.getByLabel("Per video").fill("1");
    await page.getByRole("button", { name: "More variations" }).click();
    await expect.poll(() => page.locator(".job-summary .job-count").textContent(), { timeout: 120_000 }).toBe("4 of 4 variations completed");
    expect(await badge.textContent()).toBe("Completed");
    expect(await page.locator('.variation[data-index="4"]').getAttribute("data-status")).toBe("completed");
    await context.close();
  }, 300_000);

  it("cancels a running job and continues it with Resume to Completed", async () => {
    const { context, page } = await suite.newUser("resume");
    const api = apiOf(context, suite.ui.url);
    const clip = await readFile(await makeClip(suite.dir, "teaser.mp4", 8, "640x360"));
    const { id } = await api.createJob({ name: "teaser.mp4", buffer: clip }, 2);
    await openJob(page, id);
    await until("a running variation", async () => ((j) => (running(j) > 0 ? j : undefined))(await api.job(id)), 90_000, 50);

    await page.locator(".cancel-button").click();
    await page.getByRole("dialog", { name: "Cancel this job?" }).getByRole("button", { name: "Cancel job" }).click();
    const badge = page.locator(".job-summary .badge");
    await expect.poll(() => badge.textContent(), { timeout: 30_000 }).toMatch(/^Cancelled \([01]\/2\)$/);

    const release = await hold(page, "resume");
    const button = page.locator(".pause-button");
    await expect.poll(() => button.textContent()).toMatch(/^Resume/);
    await button.click();
    await page.getByRole("dialog", { name: "Continue this cancelled job?" }).getByRole("button", { name: "Continue job" }).click();
    await expect.poll(() => button.textContent()).toMatch(/^Resuming…/);
    release();
    await expect.poll(() => badge.textContent(), { timeout: 120_000 }).toBe("Completed");
    const job = await api.job(id);
    expect(job).toMatchObject({ status: "completed", completedVariations: 2, cancelledAt: null });
    expect(await page.locator('.times dd[data-term="cancelled"]').count()).toBe(0);
    await screenshot(page, "detail-resumed");
    await context.close();
  }, 300_000);
});
