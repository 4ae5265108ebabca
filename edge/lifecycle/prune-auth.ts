import { pruneLoginFailures } from "../../db/queries/login";
import { deleteExpiredSessions } from "../../db/queries/sessions";
import type { LifecycleDeps } from "./index";

/** Expired sessions and ended login-failure windows are dead weight; drop them. */
export async function pruneAuth(deps: LifecycleDeps, now: number): Promise<Record<string, number>> {
  return { sessions: await deleteExpiredSessions(deps.db, now), loginFailures: await pruneLoginFailures(deps.db, now) };
}
