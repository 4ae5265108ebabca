import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { finalizeJobs } from "../finalize";
import { reapStatement } from "./claim";
import { runnerRoundTrip } from "./round-trip";

/**
 * For the edge cron: running variations whose lease expired and that no runner took over. Attempt cap reached →
 * failed "runner lost 3 times"; job asked to cancel (or finished) → cancelled; otherwise — a paused job's too —
 * back to queued (the attempt stays counted). Like every query that moves variations, it finalizes the jobs it touched (a failed or cancelled
 * variation may have been the last active one). Returns the affected jobs and those it finalized.
 */
export async function recoverExpiredLeases(db: Db, now: number): Promise<{ jobIds: string[]; finalized: string[] }> {
  const [reaped, requeued] = await db.batch([
    reapStatement(db, now),
    db.all<{ jobId: string }>(sql`
      UPDATE variations SET status = 'queued', runner_id = NULL, lease_expires_at = NULL, progress = 0
      WHERE status = 'running' AND lease_expires_at < ${now}
      RETURNING job_id AS jobId`),
  ]);
  const finalized = await finalizeJobs(db, reaped.map((r) => r.jobId), now);
  return { jobIds: [...new Set([...reaped.map((r) => r.jobId), ...requeued.map((r) => r.jobId)])], finalized };
}

/**
 * At runner start: running variations registered to this runner id belong to a previous life of it (a restart
 * with a fixed RUNNER_ID) and nothing runs them: they are stranded, handed back at once instead of waiting for
 * LEASE_MS (see the `inHand` rule of runnerRoundTrip). Returns the affected job ids.
 */
export async function recoverRunnerVariations(db: Db, runnerId: string, now: number): Promise<string[]> {
  const { stranded } = await runnerRoundTrip(db, { runnerId, now, leaseMs: 0, inHand: [] });
  return [...new Set(stranded.map((s) => s.jobId))];
}
