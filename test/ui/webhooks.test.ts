import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser, Page } from "playwright-core";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, login, startUiStack, type UiStack } from "./helpers";

/** The Webhooks page in Chromium against the real stack (npm start's launcher: WEBHOOKS_ALLOW_LOCAL_HTTP=1). */
describe("webhooks web UI", () => {
  let ui: UiStack;
  let browser: Browser;
  let page: Page;
  let receiver: Server;
  let url = "";
  let secret = "";
  /** The secret a rotation replaced (it should still sign next to the new one). */
  let replaced = "";
  const received: { id: string; type: string; path: string; replacedVerifies: boolean }[] = [];
  let badSignatures = 0;
  const verifies = (key: string, body: string, headers: Record<string, string>) => {
    try {
      new Webhook(key).verify(body, headers);
      return true;
    } catch {
      return false;
    }
  };

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        const headers = req.headers as Record<string, string>;
        if (!verifies(secret, body, headers)) {
          badSignatures++;
          res.writeHead(400).end();
          return;
        }
        const payload = JSON.parse(body) as { type: string };
        received.push({
          id: String(req.headers["webhook-id"]),
          type: payload.type,
          path: req.url ?? "",
          replacedVerifies: replaced !== "" && verifies(replaced, body, headers),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    [ui, browser] = await Promise.all([startUiStack({ runners: 0 }), launchChromium()]);
    page = await (await browser.newContext()).newPage();
    await login(page, ui.url, ui.admin.email, ui.admin.password, "/webhooks");
  }, 150_000);

  afterAll(async () => {
    await browser?.close();
    await ui?.stop();
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
  });

  it("adds a webhook showing its secret once, sends a test event, shows it delivered, redelivers, rotates the secret, edits and deletes", async () => {
    await expect.poll(() => page.locator("#webhooks-body").getByText("No webhooks yet.").isVisible()).toBe(true);
    await page.getByLabel("Endpoint URL").fill(url);
    await page.getByRole("button", { name: "Add webhook" }).click();
    const secretBox = page.locator("#webhook-secret");
    await expect.poll(() => secretBox.isVisible()).toBe(true);
    secret = await secretBox.inputValue();
    expect(secret).toMatch(/^whsec_/);
    const row = page.locator("#webhooks-body tr", { hasText: url });
    await expect.poll(() => row.isVisible()).toBe(true);

    await row.getByRole("button", { name: "Send test event" }).click();
    await expect.poll(() => received.length, { timeout: 60_000 }).toBe(1);
    expect(received[0]!.type).toBe("webhook.test");
    const delivery = page.locator(`#deliveries-body tr[data-delivery-id="${received[0]!.id}"]`);
    await expect
      .poll(
        async () => {
          await row.getByRole("button", { name: "Deliveries" }).click();
          return (await delivery.textContent()) ?? "";
        },
        { timeout: 30_000 },
      )
      .toContain("delivered");
    expect(await delivery.textContent()).toContain("HTTP 204");

    await delivery.getByRole("button", { name: "Redeliver" }).click();
    await expect.poll(() => received.length, { timeout: 60_000 }).toBe(2);
    expect(received[1]!.id).toBe(received[0]!.id);
    expect(badSignatures).toBe(0);

    // A new secret, shown once; the next event is signed with it and with the one it replaced.
    page.once("dialog", (d) => void d.accept());
    await row.getByRole("button", { name: "Rotate secret" }).click();
    await expect.poll(() => secretBox.inputValue()).not.toBe(secret);
    const rotated = await secretBox.inputValue();
    expect(rotated).toMatch(/^whsec_/);
    expect(await page.locator("#webhook-secret-label").textContent()).toContain(`New signing secret for ${url}`);
    [replaced, secret] = [secret, rotated];
    await row.getByRole("button", { name: "Send test event" }).click();
    await expect.poll(() => received.length, { timeout: 60_000 }).toBe(3);
    expect(received[2]).toMatchObject({ type: "webhook.test", replacedVerifies: true });
    expect(badSignatures).toBe(0);

    // Edited in place: a new URL and fewer events, the same webhook and secret.
    await row.getByRole("button", { name: "Edit" }).click();
    expect(await page.getByLabel("Endpoint URL").inputValue()).toBe(url);
    await page.getByLabel("Endpoint URL").fill(`${url}/moved`);
    await page.locator('input[name="events"][value="job.paused"]').uncheck();
    await page.getByRole("button", { name: "Save changes" }).click();
    const moved = page.locator("#webhooks-body tr", { hasText: `${url}/moved` });
    await expect.poll(() => moved.isVisible()).toBe(true);
    expect(await moved.textContent()).not.toContain("job.paused");
    expect(await page.locator("#webhooks-body tr").count()).toBe(1);
    await moved.getByRole("button", { name: "Send test event" }).click();
    await expect.poll(() => received.length, { timeout: 60_000 }).toBe(4);
    expect(received[3]).toMatchObject({ type: "webhook.test", path: "/hook/moved" });
    expect(badSignatures).toBe(0);

    // A reload never shows a secret again.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    expect(await page.content()).not.toContain(secret);
    expect(await page.content()).not.toContain(replaced);

    page.once("dialog", (d) => void d.accept());
    await page.locator("#webhooks-body tr", { hasText: `${url}/moved` }).getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => page.locator("#webhooks-body").getByText("No webhooks yet.").isVisible()).toBe(true);
  });

  it("shows the deliveries of the webhook clicked last, even when an earlier click's answer arrives after it", async () => {
    const make = (hookUrl: string) =>
      page.evaluate(async (u) => {
        const res = await fetch("/api/webhooks", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ url: u, events: ["job.completed"] }) });
        return ((await res.json()) as { id: string }).id;
      }, hookUrl);
    const a = await make(`${url}/race-a`);
    const b = await make(`${url}/race-b`);
    expect((await page.evaluate(async (id) => (await fetch(`/api/webhooks/${id}/test`, { method: "POST" })).status, a)) < 300).toBe(true);
    await page.reload();

    // A's list answers only when the test lets it, after B's has been shown.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route(`**/api/webhooks/${a}/deliveries`, async (route) => {
      await held;
      await route.continue();
    });
    await page.locator("#webhooks-body tr", { hasText: `${url}/race-a` }).getByRole("button", { name: "Deliveries" }).click();
    await page.locator("#webhooks-body tr", { hasText: `${url}/race-b` }).getByRole("button", { name: "Deliveries" }).click();
    await expect.poll(() => page.locator("#deliveries-body").getByText("No deliveries yet.").isVisible()).toBe(true);
    const late = page.waitForResponse((r) => r.url().endsWith(`/api/webhooks/${a}/deliveries`));
    release();
    await late;
    // The late answer was read and dropped: B's title and B's (empty) list stay.
    // However long the page takes to read it: the title and list checked over half a second stay B's.
    for (let i = 0; i < 5; i++) {
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 100))));
      expect(await page.locator("#deliveries-title").textContent()).toBe(`Deliveries to ${url}/race-b`);
    }
    expect(await page.locator("#deliveries-title").textContent()).toBe(`Deliveries to ${url}/race-b`);
    expect(await page.locator("#deliveries-body").textContent()).toContain("No deliveries yet.");
    await page.unroute(`**/api/webhooks/${a}/deliveries`);
    for (const id of [a, b]) await page.evaluate(async (i) => void (await fetch(`/api/webhooks/${i}`, { method: "DELETE" })), id);
  });

  it("shows the API's refusal of a private endpoint", async () => {
    await page.getByLabel("Endpoint URL").fill("https://10.0.0.1/hook");
    await page.getByRole("button", { name: "Add webhook" }).click();
    await expect.poll(() => page.getByText(/private address/).isVisible()).toBe(true);
  });

  it("a create whose answer was lost, submitted again, adds one webhook and shows its secret", async () => {
    const lostUrl = `${url}/lost-answer`;
    // The edge creates the webhook, but its answer never reaches the page.
    await page.route("**/api/webhooks", async (route) => {
      if (route.request().method() !== "POST") return route.fallback();
      await route.fetch();
      await route.abort("connectionreset");
    }, { times: 1 });
    await page.getByLabel("Endpoint URL").fill(lostUrl);
    await page.getByRole("button", { name: "Add webhook" }).click();
    await expect.poll(() => page.getByText(/Could not reach the server/).isVisible()).toBe(true);
    await page.getByRole("button", { name: "Add webhook" }).click();
    const secretBox = page.locator("#webhook-secret");
    await expect.poll(() => secretBox.isVisible()).toBe(true);
    expect(await secretBox.inputValue()).toMatch(/^whsec_/);
    const rows = page.locator("#webhooks-body tr", { hasText: lostUrl });
    await expect.poll(() => rows.count()).toBe(1);
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    await expect.poll(() => page.locator("#webhooks-body tr", { hasText: lostUrl }).count()).toBe(1);
    page.once("dialog", (d) => void d.accept());
    await page.locator("#webhooks-body tr", { hasText: lostUrl }).getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => page.locator("#webhooks-body tr", { hasText: lostUrl }).count()).toBe(0);
  });
});
