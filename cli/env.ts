import { z } from "zod";
import { REQUEST_TIMEOUT_MS } from "./client";
import { normaliseUrl } from "./config";
import { CliError, EXIT } from "./errors";

/** The process environment as the CLI receives it (process.env, or what a test passes to runCli). */
export type RawEnv = Record<string, string | undefined>;

/**
 * Files totalling more than this go through the multipart upload API (POST /api/uploads …), all of them (a job is
 * made either from a form or from uploads); less goes in one form POST, well under Cloudflare's ~100 MB body cap.
 */
export const DEFAULT_MULTIPART_BYTES = 64 * 1024 * 1024;

// `VAR=` in a shell is the same as not setting it.
const unsetIfEmpty = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);

// A whole number from `min` to `max` (decimal digits only: `1e3`, `0x10`, `2.5` are refused), `fallback` when unset.
function wholeNumber(min: number, max: number, fallback: number) {
  const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
  return z.preprocess(unsetIfEmpty, z.string().optional()).transform((raw, ctx) => {
    if (raw === undefined) return fallback;
    const n = Number(raw.trim());
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: "custom", message: `must be a whole number ${range}, not ${JSON.stringify(raw)}` });
      return z.NEVER;
    }
    return n;
  });
}

const text = z.preprocess(unsetIfEmpty, z.string().optional());

/**
 * Every environment variable the CLI reads, checked once when a command starts (runCli): a bad value is a usage
 * error naming it (exit 2) before anything is sent, never a silent default or a NaN deep in a retry loop. Commands
 * get the parsed values (`Ctx.env`), not process.env.
 */
export const CliEnvSchema = z.object({
  // Where config.json, uploads.json, submits.json and devices.json live (cli/config.ts configDir).
  HOME: text,
  XDG_CONFIG_HOME: text,
  // Override what `login` stored (CI, scripts).
  VIDEO_REFRESHER_URL: z.preprocess(unsetIfEmpty, z.string().optional()).transform((raw, ctx) => {
    if (raw === undefined) return undefined;
    try {
      return normaliseUrl(raw);
    } catch {
      ctx.addIssue({ code: "custom", message: `must be an http(s) URL, not ${JSON.stringify(raw)}` });
      return z.NEVER;
    }
  }),
  VIDEO_REFRESHER_TOKEN: text,
  // 1: plain http to another machine is allowed (a trusted network); 0 or unset: only to this machine.
  VIDEO_REFRESHER_ALLOW_HTTP: z
    .preprocess(unsetIfEmpty, z.enum(["0", "1"], { error: (issue) => `must be 1 or 0, not ${JSON.stringify(issue.input)}` }).optional())
    .transform((v) => v === "1"),
  // Files totalling more than this many bytes go through the upload API (tests lower it).
  VIDEO_REFRESHER_MULTIPART_BYTES: wholeNumber(1, Number.MAX_SAFE_INTEGER, DEFAULT_MULTIPART_BYTES),
  // How long a form upload may take no chunk, or wait for its answer after the last, in ms.
  VIDEO_REFRESHER_FORM_STALL_MS: wholeNumber(1, Number.MAX_SAFE_INTEGER, REQUEST_TIMEOUT_MS),
  // Parts of a large file sent at once.
  VIDEO_REFRESHER_PART_CONCURRENCY: wholeNumber(1, 16, 3),
  // The first wait before a part or a complete is tried again, in ms (then 2×, 4×, … plus jitter).
  VIDEO_REFRESHER_RETRY_BASE_MS: wholeNumber(1, 60_000, 500),
  // Test hook: after this many stored parts the upload stands still (0: never), one part at a time.
  VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS: wholeNumber(0, Number.MAX_SAFE_INTEGER, 0),
});

/** The CLI's environment, parsed. */
export type CliEnv = z.output<typeof CliEnvSchema>;

/** Where the CLI keeps its files: the part of the environment cli/config.ts needs. */
export type ConfigPlace = Pick<CliEnv, "HOME" | "XDG_CONFIG_HOME">;

/** Parses the environment once; a bad value is a CliError (exit 2, code usage) naming every bad variable. */
export function parseCliEnv(raw: RawEnv): CliEnv {
  const known = Object.fromEntries(Object.keys(CliEnvSchema.shape).map((k) => [k, raw[k]]));
  const result = CliEnvSchema.safeParse(known);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join(".")} ${i.message}`);
  throw new CliError(`bad environment: ${problems.join("; ")}`, EXIT.usage, "usage");
}
