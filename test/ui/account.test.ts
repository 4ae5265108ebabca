import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiOf, launchChromium, login, startUiStack, uniqueEmail, type UiStack, requestOf } from "./helpers";

/** Account pages in Chromium against the real stack (no runner needed): password, sessions, disable, tokens. */
describe("account web UI", () => {
  let ui: UiStack;
  let browser: Browser;
  let admin: BrowserContext;
  let adminPage: Page;
  const PASSWORD = "correct horse battery staple";

  beforeAll(async () => {
    [ui, browser] = await Promise.all([startUiStack({ runners: 0 }), launchChromium()]);
    admin = await browser.newContext();
    adminPage = await admin.newPage();
    await login(adminPage, ui.url, ui.admin.email, ui.admin.password);
  }, 150_000);

  afterAll(async () => {
    await browser?.close();
    await ui?.stop();
  });

  async function newUser(tag: string, password = PASSWORD): Promise<{ email: string; context: BrowserContext; page: Page }> {
    const email = uniqueEmail(tag);
    await apiOf(admin, ui.url).createUser(email, password);
    const context = await browser.newContext();
    const page = await context.newPage();
    await login(page, ui.url, email, password, "/account");
    return { email, context, page };
  }

  it("renders every page without a Content-Security-Policy violation (no inline script or style anywhere)", async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      const seen: string[] = [];
      (window as unknown as { cspViolations: string[] }).cspViolations = seen;
      document.addEventListener("securitypolicyviolation", (e) => seen.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    const page = await context.newPage();
    const violations: string[] = [];
    await page.goto(`${ui.url}/login`, { waitUntil: "networkidle" });
    for (const v of await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations)) violations.push(`/login: ${v}`);
    await login(page, ui.url, ui.admin.email, ui.admin.password);
    for (const path of ["/", "/jobs", "/account", "/webhooks", "/tokens", "/admin/users", "/admin/runners", "/jobs/no-such-job"]) {
      await page.goto(`${ui.url}${path}`, { waitUntil: "networkidle" });
      for (const v of await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations)) violations.push(`${path}: ${v}`);
    }
    await context.close();
    expect(violations).toEqual([]);
  });

  it("changes the password on /account and signs out the user's other browser, which then lands on the login page", async () => {
    const { email, context, page } = await newUser("pw");
    const other = await browser.newContext();
    const otherPage = await other.newPage();
    await login(otherPage, ui.url, email, PASSWORD, "/account");

    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    await expect.poll(() => page.locator("#sessions-body tr").count()).toBe(2);
    expect(await page.locator("#sessions-body").getByText("This browser").count()).toBe(1);

    await page.getByLabel("Current password").fill(PASSWORD);
    await page.getByLabel("New password").fill("an even longer new passphrase");
    await page.getByRole("button", { name: "Change password" }).click();
    await expect.poll(() => page.getByText("Password changed. Your other sessions were signed out.").isVisible()).toBe(true);
    await expect.poll(() => page.locator("#sessions-body tr").count()).toBe(1);

    await otherPage.goto(`${ui.url}/jobs`);
    await otherPage.waitForURL(/\/login\?/);
    await context.close();
    await other.close();
  });

  it("signs out another session from the sessions list", async () => {
    const { email, context, page } = await newUser("sess");
    const other = await browser.newContext();
    await login(await other.newPage(), ui.url, email, PASSWORD, "/account");
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    await page.getByRole("button", { name: /^Sign out/ }).click();
    await expect.poll(() => page.locator("#sessions-body tr").count()).toBe(1);
    const res = await requestOf(other).get(`${ui.url}/api/me`);
    expect(res.status()).toBe(401);
    await context.close();
    await other.close();
  });

  it("lets an admin disable a user from /admin/users: the user is signed out at once and cannot log in until enabled", async () => {
    const { email, context, page } = await newUser("dis");
    await adminPage.goto(`${ui.url}/admin/users`);
    await adminPage.waitForSelector("body[data-ready=true]");
    const row = adminPage.locator("#users-body tr", { hasText: email });
    await expect.poll(() => row.getByText("Active").isVisible()).toBe(true);
    adminPage.once("dialog", (d) => void d.accept());
    await row.getByRole("button", { name: /^Disable/ }).click();
    await expect.poll(() => row.getByText("Disabled", { exact: true }).isVisible()).toBe(true);

    expect((await requestOf(context).get(`${ui.url}/api/me`)).status()).toBe(401);
    await page.goto(`${ui.url}/login`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => page.getByRole("alert").filter({ hasText: "disabled" }).isVisible()).toBe(true);

    await row.getByRole("button", { name: /^Enable/ }).click();
    await expect.poll(() => row.getByText("Active").isVisible()).toBe(true);
    await login(page, ui.url, email, PASSWORD);
    await context.close();
  });

  it("lets an admin set a new password for a user who lost theirs from /admin/users: the user is signed out and signs in with it", async () => {
    const { email, context, page } = await newUser("reset");
    await adminPage.goto(`${ui.url}/admin/users`);
    await adminPage.waitForSelector("body[data-ready=true]");
    const row = adminPage.locator("#users-body tr", { hasText: email });
    await row.getByRole("button", { name: `Set password for ${email}` }).click();
    const dialog = adminPage.getByRole("dialog", { name: "Set a new password" });
    await expect.poll(() => dialog.isVisible()).toBe(true);
    expect(await dialog.textContent()).toContain(email);
    // A password the server refuses keeps the dialog open with the reason.
    await dialog.getByLabel("New password").fill("password1234");
    await dialog.getByRole("button", { name: "Set password" }).click();
    await expect.poll(() => dialog.getByRole("alert").isVisible()).toBe(true);
    await dialog.getByLabel("New password").fill("a fresh long passphrase");
    await dialog.getByRole("button", { name: "Set password" }).click();
    await expect.poll(() => dialog.isVisible()).toBe(false);
    await expect.poll(() => adminPage.getByText(`New password set for ${email}`).isVisible()).toBe(true);

    expect((await requestOf(context).get(`${ui.url}/api/me`)).status()).toBe(401);
    await login(page, ui.url, email, "a fresh long passphrase");
    await context.close();
  });

  it("leaves the Set password dialog opened for another user alone when an earlier answer arrives late", async () => {
    const a = await newUser("reset-a");
    const b = await newUser("reset-b");
    await adminPage.goto(`${ui.url}/admin/users`);
    await adminPage.waitForSelector("body[data-ready=true]");
    // A's answer is held until the dialog has been reopened for B.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await adminPage.route("**/api/users/*/password", async (route) => {
      await held;
      await route.continue();
    });
    try {
      const dialog = adminPage.getByRole("dialog", { name: "Set a new password" });
      await adminPage.locator("#users-body tr", { hasText: a.email }).getByRole("button", { name: `Set password for ${a.email}` }).click();
      await dialog.getByLabel("New password").fill("a fresh long passphrase");
      await dialog.getByRole("button", { name: "Set password" }).click();
      await adminPage.keyboard.press("Escape");
      await expect.poll(() => dialog.isVisible()).toBe(false);
      await adminPage.locator("#users-body tr", { hasText: b.email }).getByRole("button", { name: `Set password for ${b.email}` }).click();
      await dialog.getByLabel("New password").fill("typed for b, not sent");
      release();
      await expect.poll(() => adminPage.getByText(`New password set for ${a.email}`).isVisible()).toBe(true);
      expect(await dialog.isVisible()).toBe(true);
      expect(await dialog.textContent()).toContain(b.email);
      expect(await dialog.getByLabel("New password").inputValue()).toBe("typed for b, not sent");
    } finally {
      release();
      await adminPage.unroute("**/api/users/*/password");
      await adminPage.keyboard.press("Escape");
    }
    await login(a.page, ui.url, a.email, "a fresh long passphrase");
    await a.context.close();
    await b.context.close();
  });

  it("creates a read-only token with an expiry on /tokens and lists both", async () => {
    const { context, page } = await newUser("tok");
    await page.goto(`${ui.url}/tokens`);
    await page.waitForSelector("body[data-ready=true]");
    await page.getByLabel("Token name").fill("reports");
    await page.getByLabel("Access").selectOption("read");
    await page.getByLabel("Expires").selectOption("7");
    await page.getByRole("button", { name: "Create token" }).click();
    await expect.poll(() => page.locator("#token-value").inputValue()).toMatch(/^vrt_/);
    const row = page.locator("#tokens-body tr", { hasText: "reports" });
    await expect.poll(() => row.getByText("Read-only").isVisible()).toBe(true);
    expect(await row.locator("td").nth(4).textContent()).not.toBe("never");
    const token = await page.locator("#token-value").inputValue();
    const post = await requestOf(context).post(`${ui.url}/api/tokens`, { headers: { authorization: `Bearer ${token}` }, data: { name: "x" } });
    expect(post.status()).toBe(403);
    await context.close();
  });

  it("makes one token from a double click on Create token and a repeated Enter while the answer is on its way", async () => {
    const { context, page } = await newUser("tok2");
    await page.goto(`${ui.url}/tokens`);
    await page.waitForSelector("body[data-ready=true]");
    const posts: string[] = [];
    page.on("request", (req) => {
      if (req.method() === "POST" && req.url().endsWith("/api/tokens")) posts.push(req.url());
    });
    // The answer is held until the second click and the Enters have happened, whatever this machine's speed.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await page.route("**/api/tokens", async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      await gate;
      await route.continue();
    });

    await page.getByLabel("Token name").fill("deploys");
    const create = page.getByRole("button", { name: "Create token" });
    await create.dblclick();
    await page.getByLabel("Token name").press("Enter");
    await page.getByLabel("Token name").press("Enter");
    const disabledWhileWaiting = await create.isDisabled();
    release();

    await expect.poll(() => page.locator("#token-value").inputValue(), { timeout: 10_000 }).toMatch(/^vrt_/);
    await expect.poll(() => create.isEnabled()).toBe(true);
    const listed = (await (await requestOf(context).get(`${ui.url}/api/tokens`)).json()) as { tokens: { name: string }[] };
    expect(listed.tokens.map((t) => t.name)).toEqual(["deploys"]);
    expect(posts).toHaveLength(1);
    expect(disabledWhileWaiting).toBe(true);
    await page.unroute("**/api/tokens");
    await context.close();
  });

  it("shows the token a lost answer made when Create token is pressed again, and leaves one token listed whose shown secret works", async () => {
    const { context, page } = await newUser("tok3");
    await page.goto(`${ui.url}/tokens`);
    await page.waitForSelector("body[data-ready=true]");
    // The server makes the token, then the answer is lost on its way to the page.
    let dropped = 0;
    await page.route("**/api/tokens", async (route) => {
      if (route.request().method() !== "POST" || dropped > 0) return route.continue();
      dropped++;
      await route.fetch();
      await route.abort("connectionreset");
    });
    await page.getByLabel("Token name").fill("nightly");
    const create = page.getByRole("button", { name: "Create token" });
    await create.click();
    await expect.poll(() => page.locator("#page-message").textContent()).not.toBe("");
    expect(await page.locator("#token-created").isVisible()).toBe(false);
    await expect.poll(() => create.isEnabled()).toBe(true);
    await create.click();
    await expect.poll(() => page.locator("#token-value").inputValue(), { timeout: 10_000 }).toMatch(/^vrt_/);
    const token = await page.locator("#token-value").inputValue();
    const listed = (await (await requestOf(context).get(`${ui.url}/api/tokens`)).json()) as { tokens: { name: string }[] };
    expect(listed.tokens.map((t) => t.name)).toEqual(["nightly"]);
    const me = await requestOf(context).get(`${ui.url}/api/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(me.status()).toBe(200);
    expect(dropped).toBe(1);
    await page.unroute("**/api/tokens");
    await context.close();
  });

  it("sends the same Idempotency-Key again after a 5xx, and a new one after a refusal no retry changes (its token was used)", async () => {
    const { context, page } = await newUser("tok4");
    await page.goto(`${ui.url}/tokens`);
    await page.waitForSelector("body[data-ready=true]");
    const keys: (string | undefined)[] = [];
    const answers = [
      { status: 503, code: "db_unavailable", message: "The database is unavailable; try again" },
      { status: 409, code: "token_already_used", message: "The token this Idempotency-Key made has been used since" },
    ];
    await page.route("**/api/tokens", async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      keys.push(route.request().headers()["idempotency-key"]);
      const answer = answers.shift();
      if (!answer) return route.continue();
      await route.fulfill({ status: answer.status, contentType: "application/json", body: JSON.stringify({ error: { code: answer.code, message: answer.message } }) });
    });
    await page.getByLabel("Token name").fill("builds");
    const create = page.getByRole("button", { name: "Create token" });
    for (let i = 0; i < 2; i++) {
      await create.click();
      await expect.poll(() => keys.length).toBe(i + 1);
      await expect.poll(() => create.isEnabled()).toBe(true);
    }
    await create.click();
    await expect.poll(() => page.locator("#token-value").inputValue(), { timeout: 10_000 }).toMatch(/^vrt_/);
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[1]);
    await page.unroute("**/api/tokens");
    await context.close();
  });
});
