import { readFile } from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { isDbUnavailable } from "./errors";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface DbTarget {
  url: string;
  authToken?: string;
  /** Where the URL came from, for the one line every script prints about which database it used. */
  source: string;
}

/** The local stack's data directory: DATA_DIR (relative to the repository) or .data. */
export function localDataDir(env: NodeJS.ProcessEnv): string {
  const dataDir = env.DATA_DIR || ".data";
  return isAbsolute(dataDir) ? dataDir : join(ROOT, dataDir);
}

/** `KEY=value` lines of a file `npm start` wrote; null when there is no such file. */
export async function readEnvFile(file: string): Promise<Record<string, string> | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return null;
  }
  return Object.fromEntries(
    text
      .split("\n")
      .map((l) => /^([A-Z_]+)=(.*)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
}

/**
 * The database a developer script talks to: LIBSQL_URL (+ LIBSQL_AUTH_TOKEN) when set, else the local stack's
 * (`npm start` writes its URL and token to DATA_DIR/edge.env, default .data/). Null when neither exists.
 * Empty variables count as unset.
 */
export async function resolveDbTarget(env: NodeJS.ProcessEnv): Promise<DbTarget | null> {
  if (env.LIBSQL_URL) return { url: env.LIBSQL_URL, authToken: env.LIBSQL_AUTH_TOKEN || undefined, source: "LIBSQL_URL" };
  const dataDir = env.DATA_DIR || ".data";
  const file = join(localDataDir(env), "edge.env");
  const vars = await readEnvFile(file);
  if (!vars?.LIBSQL_URL) return null;
  const shown = isAbsolute(dataDir) ? file : relative(ROOT, file);
  return { url: vars.LIBSQL_URL, authToken: vars.LIBSQL_AUTH_TOKEN || undefined, source: `the local stack (${shown})` };
}

export const NO_DB_TARGET =
  "no database: set LIBSQL_URL (and LIBSQL_AUTH_TOKEN) to the database URL, or start the local stack with `npm start`";

/**
 * One line for a script's database failure: where it could not reach, or the database's own reason. Never the
 * failed statement: drizzle's message carries the SQL and its parameters (user:create's is a password hash).
 */
export function dbFailureMessage(err: unknown, target: DbTarget): string {
  if (isDbUnavailable(err)) {
    const hint = target.source === "LIBSQL_URL" ? "check LIBSQL_URL" : "is `npm start` running?";
    return `cannot reach the database at ${target.url} (${hint})`;
  }
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error && e.cause instanceof Error; depth++) e = e.cause;
  const message = e instanceof Error ? e.message : String(e);
  return /^Failed query:/.test(message) ? "the database refused the statement" : message;
}
