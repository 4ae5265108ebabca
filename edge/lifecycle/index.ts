import { loggable } from "../../db/errors";
import type { Db } from "../../db/client";
import type { Config } from "../env";
import { endDisabledAccountsWork } from "./disabled-accounts";
import { expireFinishedJobs } from "./expire-jobs";
import { failStaleQueued } from "./fail-stale-queued";
import { finalizeIdleJobs } from "./finalize-idle";
import { deleteOrphanObjects } from "./orphan-objects";
import { pruneAuth } from "./prune-auth";
import { pruneRunners } from "./prune-runners";
import { recoverLeases } from "./recover-leases";
import { abortAbandonedMultiparts } from "./abandoned-multiparts";
import { abortStaleUploads } from "./stale-uploads";
import { enforceStorageCap } from "./storage-cap";

export interface LifecycleDeps {
  db: Db;
  bucket: R2Bucket;
  config: Config;
}

/** One lifecycle rule: a pure function of (deps, now) that tests call directly. */
export type LifecycleRule = (deps: LifecycleDeps, now: number) => Promise<Record<string, number>>;

/**
 * Order matters within one tick: leases are recovered before idle jobs are finalized, and jobs that just finished
 * or failed get their expiry before the expiry and storage rules run.
 */
export const rules: Record<string, LifecycleRule> = {
  recoverLeases,
  endDisabledAccountsWork,
  finalizeIdleJobs,
  failStaleQueued,
  expireFinishedJobs,
  enforceStorageCap,
  deleteOrphanObjects,
  abortStaleUploads,
  abortAbandonedMultiparts,
  pruneAuth,
  pruneRunners,
};

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
      console.error(`lifecycle rule ${name} failed`, loggable(err));
    }
  }
  return report;
}
