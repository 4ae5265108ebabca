import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

async function page(path: string): Promise<{ res: Response; html: string }> {
  const res = await exports.default.fetch(`http://edge.test${path}`);
  return { res, html: await res.text() };
}

describe("account UI shells", () => {
  it("serves /account as a no-store shell with the password form and the sessions table, and links it in the nav", async () => {
    const { res, html } = await page("/account");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(html).toContain('data-page="account"');
    expect(html).toMatch(/<a href="\/account" aria-current="page">Account<\/a>/);
    expect(html).toContain('id="password-form"');
    expect(html).toMatch(/autocomplete="current-password"/);
    expect(html).toMatch(/id="new-password"[^>]*minlength="12"/);
    expect(html).toContain('id="sessions-body"');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.map((s) => s[2])).toEqual([""]);
  });

  it("offers scope and expiry on the tokens page and a status column on the users page", async () => {
    const tokens = (await page("/tokens")).html;
    expect(tokens).toMatch(/<select id="token-scope" name="scope">/);
    expect(tokens).toContain('<option value="read">Read-only</option>');
    expect(tokens).toMatch(/<select id="token-expiry" name="expiresInDays">/);
    const users = (await page("/admin/users")).html;
    expect(users).toContain("<th scope=\"col\">Status</th>");
    expect(users).toMatch(/name="password"[^>]*minlength="12"/);
  });
});
