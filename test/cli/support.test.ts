import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { configDir, readConfig, resolveAuth, writeConfig } from "../../cli/config";
import { apiError, CliError, EXIT, isNetworkError, toCliError } from "../../cli/errors";
import { parseCliEnv } from "../../cli/env";
import { withRetries } from "../../cli/upload";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const tempDir = async () => {
  const d = await mkdtemp(join(tmpdir(), "vr-cli-unit-"));
  dirs.push(d);
  return d;
};

describe("CLI configuration", () => {
  it("lives in $XDG_CONFIG_HOME/video-refresher, else ~/.config/video-refresher", () => {
    expect(configDir({ XDG_CONFIG_HOME: "/x/conf", HOME: "/home/u" })).toBe("/x/conf/video-refresher");
    expect(configDir({ HOME: "/home/u" })).toBe("/home/u/.config/video-refresher");
    expect(configDir({ XDG_CONFIG_HOME: "relative", HOME: "/home/u" })).toBe("/home/u/.config/video-refresher");
  });

  it("is written with mode 0600 and read back", async () => {
    const env = { XDG_CONFIG_HOME: await tempDir() };
    await writeConfig(env, { url: "http://a.test", token: "secret" });
    const s = await stat(join(configDir(env), "config.json"));
    expect(s.mode & 0o777).toBe(0o600);
    expect(await readConfig(env)).toEqual({ url: "http://a.test", token: "secret" });
  });

  it("is overridden by VIDEO_REFRESHER_URL and VIDEO_REFRESHER_TOKEN", async () => {
    const env: Record<string, string> = { XDG_CONFIG_HOME: await tempDir() };
    await writeConfig(env, { url: "https://file.test", token: "from-file" });
    expect(await resolveAuth(parseCliEnv(env))).toEqual({ url: "https://file.test", token: "from-file" });
    expect(await resolveAuth(parseCliEnv({ ...env, VIDEO_REFRESHER_TOKEN: "from-env" }))).toEqual({ url: "https://file.test", token: "from-env" });
    expect(await resolveAuth(parseCliEnv({ ...env, VIDEO_REFRESHER_URL: "https://env.test/" }))).toEqual({ url: "https://env.test", token: "from-file" });
  });

  it("sends a token over plain http only to this machine, unless VIDEO_REFRESHER_ALLOW_HTTP=1", async () => {
    const env: Record<string, string> = { XDG_CONFIG_HOME: await tempDir(), VIDEO_REFRESHER_TOKEN: "t" };
    for (const local of ["http://localhost:8787", "http://127.0.0.1:8787", "http://[::1]:8787", "http://app.localhost"]) {
      expect((await resolveAuth(parseCliEnv({ ...env, VIDEO_REFRESHER_URL: local }))).url).toBe(local);
    }
    const err = await resolveAuth(parseCliEnv({ ...env, VIDEO_REFRESHER_URL: "http://video.example.com" })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect([(err as CliError).exitCode, (err as CliError).code]).toEqual([EXIT.usage, "insecure_url"]);
    expect((err as CliError).message).toMatch(/https:\/\//);
    const allowed = await resolveAuth(parseCliEnv({ ...env, VIDEO_REFRESHER_URL: "http://video.example.com", VIDEO_REFRESHER_ALLOW_HTTP: "1" }));
    expect(allowed.url).toBe("http://video.example.com");
  });

  it("without a login or environment, is an authentication error (exit 3)", async () => {
    const err = await resolveAuth(parseCliEnv({ XDG_CONFIG_HOME: await tempDir() })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(EXIT.auth);
  });
});

describe("CLI errors", () => {
  it("carry the API's message, with exit 3 for 401/403 and 1 otherwise", () => {
    const e = apiError(409, { error: { code: "not_cancellable", message: "Job already completed" } });
    expect([e.message, e.code, e.exitCode]).toEqual(["Job already completed", "not_cancellable", EXIT.failed]);
    expect(apiError(401, { error: { code: "unauthorized", message: "Sign in" } }).exitCode).toBe(EXIT.auth);
    expect(apiError(403, undefined).exitCode).toBe(EXIT.auth);
  });

  it("map refused connections, DNS failures and timeouts to exit 4", async () => {
    const refused = await fetch("http://127.0.0.1:1/").catch((e: unknown) => e);
    expect(isNetworkError(refused)).toBe(true);
    expect(toCliError(refused, "http://127.0.0.1:1").exitCode).toBe(EXIT.network);
    const dns = Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("getaddrinfo ENOTFOUND nowhere.invalid"), { code: "ENOTFOUND" }) });
    expect(toCliError(dns).exitCode).toBe(EXIT.network);
    const timedOut = new DOMException("The operation was aborted due to timeout", "TimeoutError");
    expect(toCliError(timedOut).exitCode).toBe(EXIT.network);
    expect(toCliError(new Error("disk full")).exitCode).toBe(EXIT.failed);
  });
});

describe("part retries", () => {
  it("retry network errors and 5xx with exponential backoff, up to 5 tries", async () => {
    const waits: number[] = [];
    let calls = 0;
    const err = await withRetries(
      async () => {
        calls++;
        throw new CliError("bad gateway", EXIT.failed, "http_502", 502);
      },
      { tries: 5, baseMs: 100, sleep: async (ms) => void waits.push(ms) },
    ).catch((e: unknown) => e);
    expect((err as CliError).status).toBe(502);
    expect(calls).toBe(5);
    expect(waits).toHaveLength(4);
    waits.forEach((w, i) => expect(w).toBeGreaterThanOrEqual(100 * 2 ** i));
    waits.forEach((w, i) => expect(w).toBeLessThan(100 * 2 ** i * 1.25));
  });

  it("do not retry a refused part (4xx)", async () => {
    let calls = 0;
    await withRetries(
      async () => {
        calls++;
        throw new CliError("wrong size", EXIT.failed, "validation", 400);
      },
      { tries: 5, baseMs: 1, sleep: async () => {} },
    ).catch(() => {});
    expect(calls).toBe(1);
  });

  it("return the first success", async () => {
    let calls = 0;
    const v = await withRetries(
      async () => {
        if (++calls < 3) throw new CliError("unreachable", EXIT.network, "network");
        return "ok";
      },
      { tries: 5, baseMs: 1, sleep: async () => {} },
    );
    expect([v, calls]).toEqual(["ok", 3]);
  });
});
