import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { ConfigError, loadRunnerConfig } from "../../runner/config";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GOOD = {
  PATH: process.env.PATH,
  LIBSQL_URL: "http://127.0.0.1:8080",
  EDGE_URL: "http://127.0.0.1:8787",
  RUNNER_TOKEN: "0123456789abcdef0123",
};

describe("runner configuration", () => {
  it("applies the documented defaults", () => {
    const c = loadRunnerConfig(GOOD);
    expect(c).toMatchObject({
      RUNNER_ID: expect.stringMatching(new RegExp(`^${hostname()}-${process.pid}-[0-9a-f]{6}$`)),
      CONCURRENCY: 1,
      POLL_MS: 1000,
      LEASE_MS: 30_000,
      WATCH_MS: 1000,
      STOP_GRACE_MS: 2000,
      STALL_MS: 60_000,
      QUALITY_SSIM_FLOOR: 0.5,
      QUALITY_DISTINCT_FLOOR: 0.3,
      MAX_REDRAWS: 2,
      FFMPEG_MAX_PROCESSES: 1024,
    });
    expect(c.METRICS_PORT).toBeUndefined();
    expect(c.FFMPEG_PATH).toMatch(/\/ffmpeg$/);
    expect(c.FFPROBE_PATH).toMatch(/\/ffprobe$/);
    // Stable across restarts (no pid in it): a restarted runner finds what its predecessor left.
    expect(c.WORK_DIR).toBe(join(tmpdir(), "video-refresher"));
    expect(c.SETPRIV_PATH).toMatch(/\/setpriv$/);
    expect(c.PRLIMIT_PATH).toMatch(/\/prlimit$/);
  });

  it("takes FFMPEG_MAX_PROCESSES as a whole number no lower than an FFmpeg's own threads need", () => {
    expect(loadRunnerConfig({ ...GOOD, FFMPEG_MAX_PROCESSES: "4096" }).FFMPEG_MAX_PROCESSES).toBe(4096);
    for (const bad of ["10", "1.5", "lots", "0"]) expect(() => loadRunnerConfig({ ...GOOD, FFMPEG_MAX_PROCESSES: bad }), bad).toThrow(/FFMPEG_MAX_PROCESSES/);
  });

  it("makes a relative WORK_DIR absolute, so the paths FFmpeg prints under it are scrubbed from users' reasons", () => {
    expect(loadRunnerConfig({ ...GOOD, WORK_DIR: "./work" }).WORK_DIR).toBe(join(process.cwd(), "work"));
  });

  it("takes FFMPEG_USER as numeric <uid>:<gid> or <first>-<last>:<gid>, never root, and only for a runner started as root", () => {
    const asRoot = vi.spyOn(process, "getuid").mockReturnValue(0);
    try {
      expect(loadRunnerConfig(GOOD).FFMPEG_USER).toBeNull();
      expect(loadRunnerConfig({ ...GOOD, FFMPEG_USER: "990:991" }).FFMPEG_USER).toEqual({ uid: 990, lastUid: 990, gid: 991 });
      expect(loadRunnerConfig({ ...GOOD, FFMPEG_USER: "61000-61063:990" }).FFMPEG_USER).toEqual({ uid: 61000, lastUid: 61063, gid: 990 });
      for (const bad of ["ffmpeg", "990", "0:990", "990:0", "-1:5", "0-5:990", "991-990:990", "990-:990", "1-70000:990", "4294967295:990", "4294967296-4294967299:990", "990:4294967296"]) {
        expect(() => loadRunnerConfig({ ...GOOD, FFMPEG_USER: bad }), bad).toThrow(/FFMPEG_USER/);
      }
      // A uid per running encode, one more for what runs beside them (probes, measurements, thumbnails), and the
      // killer's own.
      expect(loadRunnerConfig({ ...GOOD, CONCURRENCY: "3", FFMPEG_USER: "61000-61004:990" }).CONCURRENCY).toBe(3);
      expect(() => loadRunnerConfig({ ...GOOD, CONCURRENCY: "3", FFMPEG_USER: "61000-61003:990" })).toThrow(/FFMPEG_USER: .*at least CONCURRENCY \+ 2/);
      asRoot.mockReturnValue(1000);
      expect(() => loadRunnerConfig({ ...GOOD, FFMPEG_USER: "990:990" })).toThrow(/FFMPEG_USER: the runner must start as root .*uid 1000/);
    } finally {
      asRoot.mockRestore();
    }
  });

  it("treats empty variables as unset", () => {
    const c = loadRunnerConfig({ ...GOOD, METRICS_PORT: "", CONCURRENCY: "" });
    expect(c.METRICS_PORT).toBeUndefined();
    expect(c.CONCURRENCY).toBe(1);
  });

  it("names every wrong variable in one readable error", () => {
    const bad = { PATH: process.env.PATH, LIBSQL_URL: "nope", RUNNER_TOKEN: "short", CONCURRENCY: "0", LOG_LEVEL: "chatty" };
    let message = "";
    try {
      loadRunnerConfig(bad);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    for (const name of ["LIBSQL_URL", "EDGE_URL", "RUNNER_TOKEN", "CONCURRENCY", "LOG_LEVEL"]) expect(message).toContain(name);
  });

  it("takes quality floors in range (a floor of 1 forces re-draws) and refuses others", () => {
    expect(loadRunnerConfig({ ...GOOD, QUALITY_SSIM_FLOOR: "1", MAX_REDRAWS: "0" })).toMatchObject({ QUALITY_SSIM_FLOOR: 1, MAX_REDRAWS: 0 });
    expect(() => loadRunnerConfig({ ...GOOD, QUALITY_SSIM_FLOOR: "1.5" })).toThrow(/QUALITY_SSIM_FLOOR/);
    expect(() => loadRunnerConfig({ ...GOOD, QUALITY_DISTINCT_FLOOR: "-1" })).toThrow(/QUALITY_DISTINCT_FLOOR/);
    expect(() => loadRunnerConfig({ ...GOOD, MAX_REDRAWS: "9" })).toThrow(/MAX_REDRAWS/);
  });

  it("refuses a lease that would expire between two heartbeats", () => {
    expect(() => loadRunnerConfig({ ...GOOD, LEASE_MS: "2000", WATCH_MS: "1000" })).toThrow(/LEASE_MS must be at least 3 × WATCH_MS/);
  });

  it("refuses a RUNNER_TOKEN still holding .env.example's placeholder, with a message saying so", () => {
    const example = /^RUNNER_TOKEN=(.*)$/m.exec(readFileSync(join(ROOT, ".env.example"), "utf8"))![1]!;
    expect(example.length, "long enough to pass the length check alone").toBeGreaterThanOrEqual(16);
    for (const token of [example, "replace-with-anything-at-all"]) {
      expect(() => loadRunnerConfig({ ...GOOD, RUNNER_TOKEN: token }), token).toThrow(
        "RUNNER_TOKEN: RUNNER_TOKEN is still a placeholder (replace-with-…): set it to the edge's RUNNER_TOKEN secret",
      );
    }
    expect(loadRunnerConfig({ ...GOOD, RUNNER_TOKEN: "my-replace-with-token-xyz" }).RUNNER_TOKEN).toBe("my-replace-with-token-xyz");
  });

  it("refuses an FFmpeg path that is not an executable", () => {
    expect(() => loadRunnerConfig({ ...GOOD, FFMPEG_PATH: "/nonexistent/ffmpeg" })).toThrow(/FFMPEG_PATH/);
  });

  it("makes the runner entry exit 1 with the message when the configuration is wrong", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "runner/main.ts"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, LIBSQL_URL: "http://127.0.0.1:1", EDGE_URL: "http://127.0.0.1:1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    expect(code).toBe(1);
    expect(stderr).toContain("Invalid runner configuration");
    expect(stderr).toContain("RUNNER_TOKEN");
  });
});
