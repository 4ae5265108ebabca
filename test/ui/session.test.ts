import { describe, expect, it } from "vitest";
import { uiSuite, requestOf } from "./helpers";

/** Signing out from the top bar against the real stack (no runner needed). */
describe("session web UI", () => {
  const suite = uiSuite({ runners: 0 });

  it("keeps the user on the page with a clear message when logging out fails, and logs out on the next click", async () => {
    const { context, page } = await suite.newUser("logout");
    const jobsUrl = `${suite.ui.url}/jobs`;
    const logouts: number[] = [];
    page.on("response", (res) => {
      if (res.request().method() === "POST" && res.url().endsWith("/api/auth/logout")) logouts.push(res.status());
    });
    // The first logout meets an edge in trouble; the session it should have ended is still valid afterwards.
    await page.route(
      "**/api/auth/logout",
      (route) => route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ error: { code: "unavailable", message: "Try later" } }) }),
      { times: 1 },
    );

    const button = page.getByRole("button", { name: "Log out" });
    await button.click();
    const message = page.locator("#page-message");
    await expect.poll(() => message.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await message.textContent()).toBe("Could not log out; try again.");
    expect(page.url()).toBe(jobsUrl);
    expect(await button.isEnabled()).toBe(true);
    expect((await requestOf(context).get(`${suite.ui.url}/api/me`)).status()).toBe(200);

    await button.click();
    await page.waitForURL(`${suite.ui.url}/login`);
    expect(logouts).toEqual([503, 204]);
    expect((await requestOf(context).get(`${suite.ui.url}/api/me`)).status()).toBe(401);
    await context.close();
  }, 60_000);
});
