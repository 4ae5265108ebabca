import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseCliEnv } from "../../cli/env";
import { CliError, EXIT } from "../../cli/errors";
import { runCapturedCli, standInEdge } from "../helpers/cli";
import { tempDirs } from "../helpers/tmp";

const temps = tempDirs("vr-cli-env");
afterAll(() => temps.cleanup());

/**
 * A stand-in edge for a multipart submit whose parts storage never takes (503): it counts every request. Its
 * environment sends a 2-byte file through the upload API.
 */
async function failingPartsEdge() {
  const requests: string[] = [];
  const url = await standInEdge((req, _body, json) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.method === "POST" && req.url === "/api/uploads") return json(201, { id: "u1", partSize: 8 * 1024 * 1024, partCount: 1 });
    if (req.method === "GET" && req.url?.startsWith("/api/jobs")) return json(200, { jobs: [], nextCursor: null });
    json(503, { error: { code: "storage_unavailable", message: "Storage did not take this part; send it again" } });
  });
  const dir = await temps.make();
  const file = join(dir, "clip.mp4");
  await writeFile(file, "ab");
  const env = { XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_URL: url, VIDEO_REFRESHER_TOKEN: "t", VIDEO_REFRESHER_MULTIPART_BYTES: "1" };
  return { requests, env, file };
}

describe("the CLI's environment (VIDEO_REFRESHER_*)", () => {
  it("refuses VIDEO_REFRESHER_RETRY_BASE_MS=abc with a usage error naming it (exit 2), instead of retrying parts without backoff", async () => {
    const { requests, env, file } = await failingPartsEdge();
    const r = await runCapturedCli(["submit", file, "-n", "1"], { ...env, VIDEO_REFRESHER_RETRY_BASE_MS: "abc" });
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toContain("VIDEO_REFRESHER_RETRY_BASE_MS");
    expect(r.err).toContain("abc");
    expect(requests).toEqual([]);
  });

  it("refuses a VIDEO_REFRESHER_PART_CONCURRENCY that is not a whole number from 1 to 16, instead of sending 3 parts at a time", async () => {
    for (const bad of ["0", "17", "2.5", "many"]) {
      const { requests, env, file } = await failingPartsEdge();
      const r = await runCapturedCli(["submit", file, "-n", "1"], { ...env, VIDEO_REFRESHER_PART_CONCURRENCY: bad });
      expect([bad, r.code]).toEqual([bad, EXIT.usage]);
      expect(r.err).toContain("VIDEO_REFRESHER_PART_CONCURRENCY");
      expect(requests).toEqual([]);
    }
  });

  it("refuses a malformed test hook VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS, instead of sending parts one at a time and never halting", async () => {
    const { requests, env, file } = await failingPartsEdge();
    const r = await runCapturedCli(["submit", file, "-n", "1"], { ...env, VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS: "one" });
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toContain("VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS");
    expect(requests).toEqual([]);
  });

  it("refuses VIDEO_REFRESHER_ALLOW_HTTP other than 1 or 0, instead of reading it as no", async () => {
    const { requests, env } = await failingPartsEdge();
    const r = await runCapturedCli(["ls"], { ...env, VIDEO_REFRESHER_ALLOW_HTTP: "yes" });
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toContain("VIDEO_REFRESHER_ALLOW_HTTP");
    expect(requests).toEqual([]);
  });

  it("checks every value before any command runs: `ls` refuses a bad VIDEO_REFRESHER_FORM_STALL_MS too, and --json prints the refusal as one JSON error", async () => {
    const { requests, env } = await failingPartsEdge();
    const r = await runCapturedCli(["ls", "--json"], { ...env, VIDEO_REFRESHER_FORM_STALL_MS: "-5" });
    expect(r.code).toBe(EXIT.usage);
    const { error } = JSON.parse(r.out) as { error: { code: string; message: string } };
    expect(error.code).toBe("usage");
    expect(error.message).toContain("VIDEO_REFRESHER_FORM_STALL_MS");
    expect(requests).toEqual([]);
  });

  it("takes empty values as unset and valid ones as given: the part is tried 5 times, 1 ms apart", async () => {
    const { requests, env, file } = await failingPartsEdge();
    const r = await runCapturedCli(["submit", file, "-n", "1"], {
      ...env,
      VIDEO_REFRESHER_RETRY_BASE_MS: "1",
      VIDEO_REFRESHER_PART_CONCURRENCY: "1",
      VIDEO_REFRESHER_FORM_STALL_MS: "",
      VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS: "",
    });
    expect(r.code).toBe(EXIT.failed);
    expect(r.err).toContain("Storage did not take this part");
    expect(requests.filter((q) => q.startsWith("PUT"))).toHaveLength(5);
  }, 30_000);

  it("still shows --help with a bad value (nothing runs)", async () => {
    const r = await runCapturedCli(["submit", "--help"], { VIDEO_REFRESHER_RETRY_BASE_MS: "abc" });
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toContain("Upload videos as one job");
  });
});

describe("parseCliEnv", () => {
  it("gives every setting its default when unset or empty", () => {
    const defaults = {
      VIDEO_REFRESHER_URL: undefined,
      VIDEO_REFRESHER_ALLOW_HTTP: false,
      VIDEO_REFRESHER_MULTIPART_BYTES: 64 * 1024 * 1024,
      VIDEO_REFRESHER_FORM_STALL_MS: 60_000,
      VIDEO_REFRESHER_PART_CONCURRENCY: 3,
      VIDEO_REFRESHER_RETRY_BASE_MS: 500,
      VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS: 0,
    };
    expect(parseCliEnv({})).toMatchObject(defaults);
    const empty = Object.fromEntries(Object.keys(defaults).map((k) => [k, ""]));
    expect(parseCliEnv(empty)).toMatchObject(defaults);
  });

  it("sends files over 64 MiB through the upload API unless VIDEO_REFRESHER_MULTIPART_BYTES says otherwise", () => {
    expect(parseCliEnv({ VIDEO_REFRESHER_MULTIPART_BYTES: "1000" }).VIDEO_REFRESHER_MULTIPART_BYTES).toBe(1000);
    expect(() => parseCliEnv({ VIDEO_REFRESHER_MULTIPART_BYTES: "lots" })).toThrow(CliError);
  });

  it("names every bad variable in one usage error (exit 2), and leaves variables it does not read alone", () => {
    const err = (() => {
      try {
        parseCliEnv({ VIDEO_REFRESHER_RETRY_BASE_MS: "abc", VIDEO_REFRESHER_URL: "ftp://x.test", VIDEO_REFRESHER_UNKNOWN: "?", PATH: "/bin" });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CliError);
    expect([(err as CliError).exitCode, (err as CliError).code]).toEqual([EXIT.usage, "usage"]);
    expect((err as CliError).message).toMatch(/VIDEO_REFRESHER_URL .*ftp:\/\/x\.test.*; VIDEO_REFRESHER_RETRY_BASE_MS must be a whole number from 1 to 60000, not "abc"/);
    expect((err as CliError).message).not.toContain("UNKNOWN");
  });

  it("normalises VIDEO_REFRESHER_URL once, as a stored login's URL is", () => {
    expect(parseCliEnv({ VIDEO_REFRESHER_URL: "https://video.example.com//" }).VIDEO_REFRESHER_URL).toBe("https://video.example.com");
  });
});
