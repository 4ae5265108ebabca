import { pruneLoginAttempts } from "../../db/queries/login-attempts";
import { deleteExpiredSessions } from "../../db/queries/sessions";
import { inBatches } from "../lib/in-batches";
import type { LifecycleDeps } from "./index";

/** Rows deleted per statement: each one holds the database's write lock, which every sign-in waits behind. */
export const PRUNE_AUTH_BATCH = 1000;
/**
 * Statements per kind per tick: enough to keep up with any plausible growth (sign-ins with made-up emails add login
 * counters), while a tick that meets a backlog still ends and leaves the rest to the next minute.
 */
export const PRUNE_AUTH_BATCHES_PER_TICK = 20;

/** Expired sessions and login counters quiet long enough to have reset are dead weight; drop them. */
export async function pruneAuth(
  deps: LifecycleDeps,
  now: number,
  bounds: { batch: number; batches: number } = { batch: PRUNE_AUTH_BATCH, batches: PRUNE_AUTH_BATCHES_PER_TICK },
): Promise<Record<string, number>> {
  return {
    sessions: await inBatches((limit) => deleteExpiredSessions(deps.db, now, limit), bounds.batch, bounds.batches),
    loginAttempts: await inBatches((limit) => pruneLoginAttempts(deps.db, now, limit), bounds.batch, bounds.batches),
  };
}
