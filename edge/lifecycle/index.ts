import type { Db } from "../../db/client";
import type { Config } from "../env";

export interface LifecycleDeps {
  db: Db;
  bucket: R2Bucket;
  config: Config;
}

/** One lifecycle rule: a pure function of (deps, now) that tests call directly. */
export type LifecycleRule = (deps: LifecycleDeps, now: number) => Promise<Record<string, number>>;

const rules: Record<string, LifecycleRule> = {};

/**
 * Runs every lifecycle rule; one failing rule does not stop the others (each is retried by the next cron tick).
 */
export async function runLifecycle(deps: LifecycleDeps, now: number): Promise<Record<string, unknown>> {
  const report: Record<string, unknown> = {};
  for (const [name, rule] of Object.entries(rules)) {
    try {
      report[name] = await rule(deps, now);
    } catch (err) {
      report[name] = { error: err instanceof Error ? err.message : String(err) };
      console.error(`lifecycle rule ${name} failed`, err);
    }
  }
  return report;
}
