import { join, relative } from "node:path";
import { localDataDir, readEnvFile } from "../db/local-target";

/** The settings that say which stack a runner serves; given any of them, the environment alone configures it. */
const CONNECTION = ["LIBSQL_URL", "EDGE_URL", "RUNNER_TOKEN"] as const;

/**
 * `npm run runner` beside a running `npm start`: when none of the connection settings is set, the local stack's
 * (DATA_DIR/runner.env, written by `npm start`) are used, with a work directory inside the data directory. Anything
 * set in the environment wins. A container has no data directory, so the image is configured by its environment only.
 * `source` names the file used (null: the environment).
 */
export async function withLocalStack(env: NodeJS.ProcessEnv): Promise<{ env: NodeJS.ProcessEnv; source: string | null }> {
  if (CONNECTION.some((k) => env[k])) return { env, source: null };
  const dir = localDataDir(env);
  const file = join(dir, "runner.env");
  const vars = await readEnvFile(file);
  if (!vars) return { env, source: null };
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const shown = relative(process.cwd(), file);
  return { env: { WORK_DIR: join(dir, "runner", "extra"), ...vars, ...given }, source: shown.startsWith("..") ? file : shown };
}
