import { exports } from "cloudflare:workers";
import { inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { DEFAULT_EFFECTS, EFFECT_FAMILIES, EFFECT_FAMILY_INFO, EFFECT_INTENSITIES } from "../../db/effects";
import { newId } from "../../db/ids";
import { upsertRunner } from "../../db/queries/runners";
import { runners } from "../../db/schema";
import { db, signIn } from "./helpers";

/** Shells that render no data: served to anyone, the client module checks the session through the API. */
const PAGES = ["/login", "/", "/jobs", "/jobs/abc123", "/admin/users", "/tokens"];

async function page(path: string): Promise<{ res: Response; html: string }> {
  const res = await exports.default.fetch(`http://edge.test${path}`);
  return { res, html: await res.text() };
}

describe("web UI page shells", () => {
  it("serves every page as HTML that loads the one client module and carries no inline script", async () => {
    for (const path of PAGES) {
      const { res, html } = await page(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toMatch(/^text\/html/);
      expect(html, path).toMatch(/^<!DOCTYPE html>|^<html/i);
      const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
      expect(scripts.length, path).toBe(1);
      expect(scripts[0]![1], path).toMatch(/type="module" src="\/assets\/js\/client\/main\.js\?v=/);
      expect(scripts[0]![2], path).toBe("");
      expect(html, path).not.toMatch(/\son[a-z]+="/); // no inline event handlers either
    }
  });

  it("marks the page in the body and the current nav link for assistive tech", async () => {
    const { html } = await page("/jobs");
    expect(html).toContain('data-page="jobs"');
    expect(html).toMatch(/<a href="\/jobs" aria-current="page">Jobs<\/a>/);
    expect(html).toContain('aria-live="polite"');
  });

  it("never lets a job id from the URL break out of its attribute", async () => {
    const { html } = await page(`/jobs/${encodeURIComponent('"><img src=x onerror=alert(1)>')}`);
    expect(html).not.toContain("<img src=x");
    expect(html).toContain('data-job-id="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
  });

  it("shows the expired-session notice on the login page only when asked, from a fixed text", async () => {
    expect((await page("/login")).html).not.toContain("session has expired");
    const { html } = await page("/login?expired=<b>pwned</b>&next=%2Fjobs");
    expect(html).toContain("Your session has expired. Log in again to continue.");
    expect(html).not.toContain("pwned");
  });

  it("passes the upload limit from the config to the upload page", async () => {
    const { html } = await page("/");
    expect(html).toContain('data-max-upload-bytes="2147483648"');
    expect(html).toMatch(/accept="\.mp4,\.mov,\.m4v,\.webm,\.mkv/);
  });

  it("offers every effect family with its explanation and the intensities on the upload page, today's look preselected", async () => {
    const { html } = await page("/");
    for (const f of EFFECT_FAMILIES) {
      const box = new RegExp(`<input[^>]*id="effect-${f}"[^>]*>`).exec(html)?.[0];
      expect(box, f).toBeDefined();
      expect(box!.includes("checked"), f).toBe(DEFAULT_EFFECTS.families.includes(f));
      expect(html).toContain(EFFECT_FAMILY_INFO[f]);
    }
    for (const i of EFFECT_INTENSITIES) expect(html).toMatch(new RegExp(`<option[^>]*value="${i}"`));
    expect(html).toMatch(/<option[^>]*value="subtle"[^>]*selected/);
  });

  it("keeps page shells out of caches so a logged-out browser never shows stale navigation", async () => {
    const { res } = await page("/jobs");
    expect(res.headers.get("cache-control")).toBe("no-store");
  });

  it("leaves unknown paths to the JSON 404", async () => {
    const res = await exports.default.fetch("http://edge.test/nope/nothing");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: "not_found" } });
  });

  it("sends a visitor without a session from the runners page to the login page and back", async () => {
    const res = await exports.default.fetch("http://edge.test/admin/runners", { redirect: "manual" });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/login?next=%2Fadmin%2Frunners");
  });

  it("shows a plain user the runners page without any runner data", async () => {
    const user = await signIn("user");
    const res = await user.call("/admin/runners");
    expect(res.status).toBe(403);
    const html = await res.text();
    expect(html).toContain("This page is for administrators.");
    expect(html).not.toContain("runners-body");
  });

  it("lists runners from the runners table for an admin, host escaped, stale ones marked offline", async () => {
    const now = Date.now();
    const fresh = `r-${newId()}`;
    const stale = `r-${newId()}`;
    await upsertRunner(db, { id: fresh, host: "<b>encoder-1</b>", version: "1.2.3", concurrency: 2, active: 1 }, now);
    await upsertRunner(db, { id: stale, host: "encoder-old", version: "1.0.0", concurrency: 1, active: 0 }, now - 5 * 60_000);
    const admin = await signIn("admin");
    const res = await admin.call("/admin/runners");
    expect(res.status).toBe(200);
    const html = await res.text();
    const row = (id: string) => html.slice(html.indexOf(`data-runner-id="${id}"`), html.indexOf("</tr>", html.indexOf(`data-runner-id="${id}"`)));
    expect(row(fresh)).toContain("<td>&lt;b&gt;encoder-1&lt;/b&gt;</td>");
    expect(row(fresh)).toContain("<td>1.2.3</td>");
    expect(row(fresh)).toMatch(/<td>1 \/ 2<\/td>/);
    expect(row(fresh)).toContain(">online<");
    expect(row(stale)).toContain(">offline<");
    expect(row(stale)).toContain("5 min ago");
  });

  it("shows a runner that stopped reporting as offline for a day, and no longer after that", async () => {
    const now = Date.now();
    const quiet = `r-${newId()}`;
    const gone = `r-${newId()}`;
    await upsertRunner(db, { id: quiet, host: "encoder-quiet", version: "1.0.0", concurrency: 1, active: 0 }, now - 23 * 60 * 60_000);
    await upsertRunner(db, { id: gone, host: "encoder-gone", version: "1.0.0", concurrency: 1, active: 0 }, now - 25 * 60 * 60_000);
    const admin = await signIn("admin");
    const html = await (await admin.call("/admin/runners")).text();
    expect(html).toContain(`data-runner-id="${quiet}"`);
    expect(html).not.toContain(`data-runner-id="${gone}"`);
    await db.delete(runners).where(inArray(runners.id, [quiet, gone]));
  });
});
