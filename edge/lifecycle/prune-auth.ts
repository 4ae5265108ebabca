import { pruneLoginAttempts } from "../../db/queries/login-attempts";
import { deleteExpiredSessions } from "../../db/queries/sessions";
import type { LifecycleDeps } from "./index";

/** Expired sessions and login counters quiet long enough to have reset are dead weight; drop them. */
export async function pruneAuth(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  return { sessions: await deleteExpiredSessions(deps.db, now), loginAttempts: await pruneLoginAttempts(deps.db, now) };
}
