import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { apiOf, makeClip, screenshot, uiSuite, until, type JobJson, requestOf } from "./helpers";

/**
 * The job page's variation rows once a real runner has measured them: thumbnail, parameters in words, SSIM / PSNR /
 * distinct, preview and download, and the per-source chart. Real stack, one runner, real FFmpeg.
 */
describe("variation rows with quality", () => {
  const suite = uiSuite({ runners: 1, runnerEnv: { POLL_MS: "200", CONCURRENCY: "2" } });

  it("shows each completed variation's thumbnail, parameters in words, quality figures, preview and download, and a chart per source", async () => {
    const { context, page } = await suite.newUser("rows", { contextOptions: { viewport: { width: 1200, height: 900 } } });
    const clip = await readFile(await makeClip(suite.dir, "promo.mp4", 4, "640x360"));
    const res = await requestOf(context).post(`${suite.ui.url}/api/jobs`, {
      headers: { origin: suite.ui.url },
      multipart: {
        effects: JSON.stringify({ intensity: "medium", families: ["color", "zoom", "mirror", "speed"] }),
        variations: "3",
        videos: { name: "promo.mp4", mimeType: "video/mp4", buffer: clip },
      },
    });
    expect(res.status()).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const api = apiOf(context, suite.ui.url);
    // A later sibling fills in an earlier one's distinctness right after its own completion, which may be the job's
    // last: wait for those writes too, or the row and the chart may be read before them.
    const measured = (j: JobJson) => (j.files[0]?.variations ?? []).every((v) => v.quality?.distinct != null);
    const done = await until("the job to complete and be measured", async () => ((j) => (j.status === "completed" && measured(j) ? j : undefined))(await api.job(id)), 150_000, 250);
    const variationParams = new Map((done.files[0]?.variations ?? []).map((v) => [v.index, v.params ?? undefined] as const));

    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    const rows = page.locator("li.variation");
    await expect.poll(() => rows.count()).toBe(3);
    // Thumbnails are real images served by the owner-checked route.
    await expect
      .poll(() => page.locator(".variation-thumb img").evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth)))
      .toEqual([320, 320, 320]);
    for (let i = 0; i < 3; i++) {
      const row = rows.nth(i);
      const sp = (s: string | null) => (s ?? "").replace(/\u00a0/g, " ");
      const params = sp(await row.locator(".variation-params").textContent());
      // The draws are random per job and a subtle one can round to nothing (brightness 0.000 is shown as no
      // brightness word), so each word is checked against the parameters the runner recorded for this row.
      const recorded = variationParams.get(Number(await row.getAttribute("data-index")));
      expect(recorded).toBeDefined();
      const num = (k: string) => Number(recorded![k]);
      const p = { brightness: num("brightness"), contrast: num("contrast"), saturation: num("saturation"), speed: num("speed") };
      expect(params).toMatch(/^zoom [0-9.]+ %, mirrored/);
      expect(params.includes("brightness ")).toBe(p.brightness !== 0);
      if (p.brightness !== 0) expect(params).toMatch(new RegExp(`brightness ${p.brightness < 0 ? "−" : "\\+"}[0-9.]+ %`));
      expect(params.includes("contrast ")).toBe(p.contrast !== 1);
      expect(params.includes("saturation ")).toBe(p.saturation !== 1);
      if (p.speed !== 1) expect(params).toMatch(new RegExp(`% ${p.speed > 1 ? "faster" : "slower"}$`));
      expect(sp(await row.locator(".variation-quality").textContent())).toMatch(/^SSIM 0\.\d{3} · PSNR \d+\.\d dB · distinct \d+\.\d %$/);
      expect(await row.getByRole("button", { name: /^Preview/ }).count()).toBe(1);
      expect(await row.getByRole("link", { name: /^Download/ }).getAttribute("href")).toMatch(new RegExp(`^/api/jobs/${id}/outputs/`));
    }
    // One chart for the source: two bars per measured variation, labelled by index.
    const sp = (s: string | null) => (s ?? "").replace(/\u00a0/g, " ");
    const chart = page.locator(".quality-chart svg");
    expect(await chart.count()).toBe(1);
    expect(await chart.locator("g[data-index]").count()).toBe(3);
    expect(await chart.locator("rect.bar-ssim").count()).toBe(3);
    expect(await chart.locator("rect.bar-distinct").count()).toBe(3);
    expect(sp(await page.locator(".quality-chart figcaption").textContent())).toMatch(/SSIM vs source .* distinct from closest sibling/);
    // The preview opens in the row.
    await rows.nth(0).getByRole("button", { name: /^Preview/ }).click();
    expect(await rows.nth(0).locator("video.preview").count()).toBe(1);
    await screenshot(page, "variation-rows");

    // The narrow layout keeps every piece of the row.
    await page.setViewportSize({ width: 390, height: 900 });
    await rows.nth(0).getByRole("button", { name: /^Hide preview/ }).click();
    await screenshot(page, "variation-rows-narrow");
    expect(await rows.nth(2).locator(".variation-quality").isVisible()).toBe(true);
  });

  it("leaves none of a user's thumbnails in the browser's cache once they log out (a shared computer)", async () => {
    const { context, page } = await suite.newUser("cache");
    const clip = await readFile(await makeClip(suite.dir, "shared.mp4", 2, "320x240"));
    const { id } = await apiOf(context, suite.ui.url).createJob({ name: "shared.mp4", buffer: clip }, 1);
    const api = apiOf(context, suite.ui.url);
    await until("the job to complete", async () => ((j) => (j.status === "completed" ? j : undefined))(await api.job(id)), 150_000, 250);
    await page.goto(`${suite.ui.url}/jobs/${id}`);
    await page.waitForSelector("body[data-ready=true]");
    const thumb = page.locator(".variation-thumb img");
    await expect.poll(() => thumb.evaluate((i) => (i as HTMLImageElement).naturalWidth)).toBe(320);
    const src = (await thumb.getAttribute("src"))!;
    // What the next person at this browser could read without signing in: the cached copy, if any.
    const cached = () => page.evaluate(async (url) => (await fetch(url, { cache: "force-cache" })).status, src);
    expect(await cached()).toBe(200);

    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(`${suite.ui.url}/login`);
    expect(await cached()).toBe(401);
    await context.close();
  });
});
