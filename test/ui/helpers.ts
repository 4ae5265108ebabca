import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { chromium, type APIRequestContext, type Browser, type BrowserContext, type Page, type Route } from "playwright-core";
import { afterAll, afterEach, beforeAll } from "vitest";
import { ROOT, type Stack } from "../../scripts/stack";
import { makeRealTimeFfmpeg } from "../helpers/runner";
import { startTestStack } from "../helpers/test-stack";

const run = promisify(execFile);

export const ARTIFACTS = join(ROOT, "test-artifacts", "ui");

/** Debian's Chromium; `npx playwright install` cannot work on these machines. */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export interface UiStack {
  stack: Stack;
  url: string;
  admin: { email: string; password: string };
  dir: string;
  /** Last lines of every child's output (wrangler's request log included), for failure messages. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

/** The same launcher as `npm start` (scripts/stack.ts) on free ports and a throwaway dir, with its own UI build. */
export async function startUiStack(opts: { runners: number; runnerEnv?: Record<string, string> }): Promise<UiStack> {
  const lines: string[] = [];
  const { stack, dir, stop } = await startTestStack({
    prefix: "vr-ui-",
    runners: opts.runners,
    runnerEnv: opts.runnerEnv,
    ui: true,
    log: (line) => {
      lines.push(line);
      if (lines.length > 400) lines.shift();
      if (process.env.UI_TEST_VERBOSE) console.log(line);
    },
    logTail: () => lines.slice(-60).join("\n"),
  });
  if (!stack.admin) {
    await stop();
    throw new Error("a fresh data dir must seed the admin account");
  }
  return {
    stack,
    url: stack.edgeUrl,
    admin: stack.admin,
    dir,
    logTail: (n = 80) => lines.slice(-n).join("\n"),
    stop,
  };
}

/** A small real video (lavfi test pattern + tone), so every test seeds its own input. */
export async function makeClip(dir: string, name: string, seconds = 6, size = "320x240"): Promise<string> {
  const path = join(dir, name);
  await run("ffmpeg", [
    "-hide_banner", "-loglevel", "error", "-y",
    "-f", "lavfi", "-i", `testsrc2=size=${size}:rate=24:duration=${seconds}`,
    "-f", "lavfi", "-i", `sine=frequency=440:duration=${seconds}`,
    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
    "-movflags", "+faststart", path,
  ]);
  return path;
}

export async function writeText(dir: string, name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** Seconds of the first video stream, or throws when ffprobe cannot read the file as a video. */
export async function probeVideo(path: string): Promise<{ codec: string; duration: number }> {
  const { stdout } = await run("ffprobe", [
    "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name:format=duration,format_name", "-of", "json", path,
  ]);
  const info = JSON.parse(stdout) as { streams?: { codec_name: string }[]; format?: { duration?: string; format_name?: string } };
  const codec = info.streams?.[0]?.codec_name;
  if (!codec || !info.format?.format_name?.includes("mp4")) throw new Error(`${path} is not an MP4 video`);
  return { codec, duration: Number(info.format.duration) };
}

export async function login(page: Page, url: string, email: string, password: string, next = "/jobs"): Promise<void> {
  await page.goto(`${url}/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${url}${next}`);
  await page.waitForSelector("body[data-ready]");
}

/** Cookie-authenticated API calls from the test, as the page's user; Origin satisfies the CSRF check. */
/**
 * API calls with a browser context's cookies, each on a connection of its own. Playwright's request agent keeps idle
 * connections open for good, and the local edge closes one after 5 s idle without a Keep-Alive hint: a call made
 * about 5 s after the previous one could go out on a connection the edge was closing at that moment (ECONNRESET,
 * "socket hang up", CI run 187). No call through here leaves a connection to reuse.
 */
export function requestOf(context: Pick<BrowserContext, "request">) {
  const fresh = <O extends { headers?: Record<string, string> }>(o?: O) => ({ ...o, headers: { ...o?.headers, connection: "close" } });
  return {
    get: (url: string, o?: Parameters<APIRequestContext["get"]>[1]) => context.request.get(url, fresh(o)),
    post: (url: string, o?: Parameters<APIRequestContext["post"]>[1]) => context.request.post(url, fresh(o)),
  };
}

export function apiOf(context: BrowserContext, url: string) {
  const headers = { origin: url };
  return {
    async createJob(file: { name: string; buffer: Buffer }, variations: number): Promise<{ id: string }> {
      const res = await requestOf(context).post(`${url}/api/jobs`, {
        headers,
        multipart: { videos: { name: file.name, mimeType: "video/mp4", buffer: file.buffer }, variations: String(variations) },
      });
      if (res.status() !== 202) throw new Error(`POST /api/jobs answered ${res.status()}: ${await res.text()}`);
      return (await res.json()) as { id: string };
    },
    async job(id: string): Promise<JobJson> {
      const res = await requestOf(context).get(`${url}/api/jobs/${id}`);
      if (!res.ok()) throw new Error(`GET /api/jobs/${id} answered ${res.status()}`);
      return (await res.json()) as JobJson;
    },
    async createUser(email: string, password: string): Promise<void> {
      const res = await requestOf(context).post(`${url}/api/users`, { headers, data: { email, password, role: "user" } });
      if (res.status() !== 201) throw new Error(`POST /api/users answered ${res.status()}: ${await res.text()}`);
    },
  };
}

export interface JobJson {
  id: string;
  status: string;
  completedVariations: number;
  totalVariations: number;
  cancelledAt: string | null;
  cancelReason: string | null;
  files: {
    variations?: { index: number; status: string; params?: Record<string, unknown> | null; quality?: { distinct: number | null } }[];
  }[];
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

export { until } from "../helpers/until";

export const uniqueEmail = (tag: string) => `${tag}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}@example.com`;

export interface SignedInUser {
  email: string;
  context: BrowserContext;
  page: Page;
}

/** What a UI test file shares: one stack, one Chromium, an admin session, a temp dir; users are made per test. */
export interface UiSuite {
  readonly ui: UiStack;
  readonly browser: Browser;
  readonly admin: BrowserContext;
  /** A directory of this file's own (clips, downloads), removed after the file. */
  readonly dir: string;
  /** A fresh user signed in in their own browser context (tests share nothing but the stack). */
  newUser(tag: string, opts?: { password?: string; next?: string; contextOptions?: Parameters<Browser["newContext"]>[0] }): Promise<SignedInUser>;
}

export const TEST_PASSWORD = "correct horse battery staple";

/**
 * Registers the file's beforeAll/afterAll: starts the stack with `runners` runners and Chromium, signs the seeded
 * admin in. Read the fields inside tests and hooks only (they are set by the beforeAll). `realTimeEncodes`: the
 * runners' encodes read their source in real time (test/helpers/runner.ts, makeRealTimeFfmpeg), so a variation is
 * running for as long as its clip plays however fast this machine encodes: for tests that act on a running job.
 */
export function uiSuite(opts: { runners: number; runnerEnv?: Record<string, string>; realTimeEncodes?: boolean }): UiSuite {
  let ui: UiStack | undefined;
  let browser: Browser | undefined;
  let admin: BrowserContext | undefined;
  let dir: string | undefined;
  let ffmpeg: Awaited<ReturnType<typeof makeRealTimeFfmpeg>> | undefined;
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`uiSuite: ${what} is only set once beforeAll has run`);
    return value;
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "vr-ui-files-"));
    if (opts.realTimeEncodes) ffmpeg = await makeRealTimeFfmpeg();
    const runnerEnv = { ...opts.runnerEnv, ...(ffmpeg ? { FFMPEG_PATH: ffmpeg.path } : {}) };
    [ui, browser] = await Promise.all([startUiStack({ runners: opts.runners, runnerEnv }), launchChromium()]);
    admin = await browser.newContext();
    await login(await admin.newPage(), ui.url, ui.admin.email, ui.admin.password);
  }, 150_000);
  // A failed test shows what the stack's processes said last: whether the edge saw a request that got no answer,
  // what the runner was doing. A failure that happens once in many runs is otherwise not explainable afterwards.
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && ui) console.error(`[ui stack] last lines of the stack's output:\n${ui.logTail(200)}`);
  });
  afterAll(async () => {
    await browser?.close();
    await ui?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    // After the stack: its runners must not find their FFmpeg gone.
    if (ffmpeg) await rm(ffmpeg.dir, { recursive: true, force: true });
  });
  return {
    get ui() {
      return ready(ui, "ui");
    },
    get browser() {
      return ready(browser, "browser");
    },
    get admin() {
      return ready(admin, "admin");
    },
    get dir() {
      return ready(dir, "dir");
    },
    async newUser(tag, userOpts = {}) {
      const { password = TEST_PASSWORD, next = "/jobs", contextOptions = {} } = userOpts;
      const email = uniqueEmail(tag);
      await apiOf(ready(admin, "admin"), ready(ui, "ui").url).createUser(email, password);
      const context = await ready(browser, "browser").newContext({ viewport: { width: 1200, height: 820 }, ...contextOptions });
      const page = await context.newPage();
      page.on("pageerror", (err) => console.error(`[${tag}] page error:`, err.message));
      await login(page, ready(ui, "ui").url, email, password, next);
      return { email, context, page };
    },
  };
}

/** Answers a routed request as the edge does when a request budget is spent: 429 rate_limited, Retry-After 2 s. */
export const fulfillRateLimited = (route: Route) =>
  route.fulfill({
    status: 429,
    headers: { "retry-after": "2" },
    contentType: "application/json",
    body: JSON.stringify({ error: { code: "rate_limited", message: "Too many requests." } }),
  });
