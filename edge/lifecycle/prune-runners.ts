import { deleteRunnersNotSeenSince } from "../../db/queries/runners";
import type { LifecycleDeps } from "./index";

/** How long an offline runner stays on the runners page before its row is removed. */
export const RUNNER_RETENTION_MS = 24 * 60 * 60 * 1000;

/** Runners not seen for a day are gone for good (crashed, scaled down); their rows would otherwise pile up. */
export async function pruneRunners(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  return { removed: await deleteRunnersNotSeenSince(deps.db, now - RUNNER_RETENTION_MS) };
}
