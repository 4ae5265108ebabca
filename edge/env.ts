import { z } from "zod";
import type { Db } from "../db/client";
import { JSON_BODY_LIMIT_DEFAULT, MAX_VIDEOS_PER_JOB, USER_LIMIT_DEFAULTS } from "../db/limits";

/**
 * Secrets come from `wrangler secret put` in production and, locally, from the 0600 `--env-file` the launcher writes
 * (scripts/stack.ts; not `--var`, which would show them in `ps`); never from the toml.
 */
export interface Secrets {
  LIBSQL_URL: string;
  LIBSQL_AUTH_TOKEN?: string;
  RUNNER_TOKEN: string;
  PASSWORD_PEPPER?: string;
}

export type Bindings = Omit<Env, "WEBHOOK_QUEUE"> & Secrets & {
  WEBHOOK_QUEUE: Queue<import("./lib/webhooks/queue").WebhookMessage>;
};

export const ConfigSchema = z.object({
  LIBSQL_URL: z.string().url("LIBSQL_URL must be an http(s):// or libsql:// URL"),
  LIBSQL_AUTH_TOKEN: z.string().optional(),
  RUNNER_TOKEN: z
    .string()
    .min(16, "RUNNER_TOKEN must be at least 16 characters")
    // .env.example's placeholder (the runners' side) is long enough; as the edge's secret, anyone could guess it.
    .refine((v) => !v.startsWith("replace-with-"), "RUNNER_TOKEN is still a placeholder (replace-with-…): set it to a random secret, the same as the runners'"),
  APP_VERSION: z.string().default("0.0.0"),
  JOB_TTL_HOURS: z.coerce.number().positive().default(24),
  MAX_UPLOAD_BYTES: z.coerce.number().int().positive().default(2 * 1024 ** 3),
  STORAGE_LIMIT_BYTES: z.coerce.number().int().positive().default(50 * 1024 ** 3),
  USER_STORAGE_BYTES: z.coerce.number().int().positive().default(USER_LIMIT_DEFAULTS.USER_STORAGE_BYTES),
  USER_ACTIVE_JOBS: z.coerce.number().int().positive().default(USER_LIMIT_DEFAULTS.USER_ACTIVE_JOBS),
  USER_QUEUED_VARIATIONS: z.coerce.number().int().positive().default(USER_LIMIT_DEFAULTS.USER_QUEUED_VARIATIONS),
  USER_OPEN_UPLOADS: z.coerce.number().int().positive().default(USER_LIMIT_DEFAULTS.USER_OPEN_UPLOADS),
  // At least one job's files: a job of MAX_VIDEOS_PER_JOB large files needs that many unused uploads at once.
  USER_UNUSED_UPLOADS: z.coerce
    .number()
    .int()
    .min(MAX_VIDEOS_PER_JOB, `USER_UNUSED_UPLOADS must be at least ${MAX_VIDEOS_PER_JOB} (the files of one job)`)
    .default(USER_LIMIT_DEFAULTS.USER_UNUSED_UPLOADS),
  JSON_BODY_LIMIT_BYTES: z.coerce.number().int().positive().default(JSON_BODY_LIMIT_DEFAULT),
  // Mixed into every new password hash; losing or changing it makes those hashes unverifiable, so set it once.
  PASSWORD_PEPPER: z.preprocess((v) => (v === "" ? undefined : v), z.string().min(16, "PASSWORD_PEPPER must be at least 16 characters").optional()),
  SESSION_MAX_AGE_DAYS: z.coerce.number().positive().default(30),
  // Only for a proxy of ours in front of the Worker that overwrites this header; otherwise clients could set it.
  TRUSTED_PROXY: z.preprocess(
    (v) => (typeof v === "string" && v.trim() === "" ? undefined : typeof v === "string" ? v.trim().toLowerCase() : v),
    z.enum(["x-real-ip", "x-forwarded-for", "true-client-ip"], "TRUSTED_PROXY must be x-real-ip, x-forwarded-for or true-client-ip").optional(),
  ),
  // Local development and tests only: webhooks may then target http:// and loopback addresses (edge/lib/webhooks).
  WEBHOOKS_ALLOW_LOCAL_HTTP: z.preprocess(
    (v) => (v === undefined || v === "" ? "0" : typeof v === "string" ? v.trim().toLowerCase() : v),
    z.enum(["0", "1", "true", "false"], "WEBHOOKS_ALLOW_LOCAL_HTTP must be 1 or 0").transform((v) => v === "1" || v === "true"),
  ),
});
export type Config = z.infer<typeof ConfigSchema>;

export interface SessionUser {
  id: string;
  email: string;
  role: "admin" | "user";
}

export interface AppEnv {
  Bindings: Bindings;
  Variables: {
    config: Config;
    db: Db;
    requestId: string;
    user: SessionUser;
    /** When the API token this request came with expires (null: never); unset for a session. */
    tokenExpiresAt?: number | null;
  };
}

const parsed = new WeakMap<object, Config>();

/** Validates the worker's environment once per env object (i.e. once per isolate), for fetch and scheduled alike. */
export function loadConfig(env: Bindings): Config {
  let config = parsed.get(env);
  if (!config) {
    const result = ConfigSchema.safeParse(env);
    if (!result.success) {
      const detail = result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      throw new Error(`Invalid worker configuration: ${detail}`);
    }
    // A binding, not a var: zod has nothing to parse, but a deployment without it would silently drop the per-user
    // request limit (edge/lib/request-limit.ts), so it fails here like a bad var does.
    if (typeof (env as Partial<Bindings>).USER_REQUESTS?.limit !== "function") {
      throw new Error("Invalid worker configuration: USER_REQUESTS: the rate-limit binding is missing (wrangler.toml [[ratelimits]])");
    }
    config = result.data;
    parsed.set(env, config);
  }
  return config;
}
