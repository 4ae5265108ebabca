import { sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../client";
import { finalizeJobs } from "../finalize";
import { runnerBeatStatement, type RunnerBeat } from "../runners";
import { JOB_REFUSES_WORK, ROW_JOB_CANCELS_WORK } from "../states";
import { batchOf } from "./batch";
import { claimStatement, jobsToProcessingStatement, reapStatement, type ClaimedVariation } from "./claim";

/** A variation a runner holds in memory: its id and the attempt its claim returned. */
export interface InHand {
  id: string;
  attempt: number;
}

export interface RoundTripInput {
  runnerId: string;
  now: number;
  leaseMs: number;
  /**
   * Heartbeat: the variations this runner is working on (lease extended, progress 0..100 written when given).
   * Omit to leave leases alone (e.g. a caller that only claims).
   */
  variations?: (InHand & { progress?: number | null })[];
  /**
   * Everything the runner holds in memory (watched or not). When given, running rows of this runner that are NOT
   * in it are stranded — a claim whose reply was lost, or a task the runner dropped — and are handed back in the
   * same transaction: never started (no params recorded) → queued with the attempt refunded; started → lease
   * expired now, so the claim (attempt counted) or the reap takes over without waiting for LEASE_MS. Only rows
   * claimed at or before this round trip's `now`: a later round trip's claims are not in a list sent before them.
   */
  inHand?: InHand[];
  /** How many variations to claim (0 = none). */
  claim?: number;
  beat?: RunnerBeat;
}

export interface HeartbeatResult {
  /** Watched variations whose lease was extended: still running, owned by this runner and attempt. */
  owned: InHand[];
  /** This runner's jobs that were asked to cancel (or are no longer accepting work). */
  cancelJobIds: string[];
}

export interface ClaimResult {
  claimed: ClaimedVariation[];
  /** Variations failed (attempt cap) or cancelled (job refuses work) because their lease expired. */
  reaped: { id: string; jobId: string; status: string }[];
}

export interface RoundTripResult {
  heartbeat: HeartbeatResult | null;
  claim: ClaimResult | null;
  /** Running rows of this runner that were not in hand, handed back. */
  stranded: { id: string; jobId: string; status: string }[];
}

const key = (v: InHand) => `${v.id}:${v.attempt}`;

/**
 * Everything a runner tells and asks the database each tick, in ONE HTTP round trip (one batch, one transaction):
 * hand back stranded rows; extend leases and write progress for exactly the listed (id, attempt) pairs; which of
 * its jobs were asked to cancel; reap expired leases that must not be retried; claim up to `claim` variations and
 * move their jobs queued → processing; refresh the registry row. Jobs touched by the reap or the hand-back are
 * finalized afterwards (rare: one extra round trip for all of them).
 */
export async function runnerRoundTrip(db: Db, input: RoundTripInput): Promise<RoundTripResult> {
  const { runnerId, now, leaseMs } = input;
  const items: BatchItem<"sqlite">[] = [];
  if (input.inHand) {
    const json = JSON.stringify(input.inHand.map(key));
    // Only rows claimed at or before this round trip's `now` (a claim sets started_at to its own `now`): the list is
    // what was in hand when this round trip was sent, and a round trip the runner gave up on may still execute after
    // its next one, whose claims that list cannot name. Those are the later round trip's to judge.
    const notInHand = sql`runner_id = ${runnerId} AND status = 'running' AND started_at <= ${now}
      AND (id || ':' || claims) NOT IN (SELECT value FROM json_each(${json}))`;
    // Never started: nothing was spent, the attempt is given back. Started: its lease ends now.
    items.push(
      db.all<{ id: string; jobId: string; status: string }>(sql`
        UPDATE variations SET
          status = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN 'cancelled' ELSE 'queued' END,
          attempts = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN attempts ELSE max(attempts - 1, 0) END,
          finished_at = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN ${now} ELSE NULL END,
          runner_id = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN runner_id ELSE NULL END,
          started_at = CASE WHEN ${ROW_JOB_CANCELS_WORK} THEN started_at ELSE NULL END,
          lease_expires_at = NULL, progress = 0
        WHERE ${notInHand} AND params IS NULL
        RETURNING id, job_id AS jobId, status`),
      db.all<{ id: string; jobId: string; status: string }>(sql`
        UPDATE variations SET lease_expires_at = ${now - 1}
        WHERE ${notInHand} AND params IS NOT NULL
        RETURNING id, job_id AS jobId, 'expired' AS status`),
    );
  }
  const hb = input.variations && input.variations.length > 0 ? input.variations : null;
  if (hb) {
    const beats: Record<string, { a: number; p: number | null }> = {};
    for (const v of hb) beats[v.id] = { a: v.attempt, p: v.progress ?? null };
    const json = JSON.stringify(beats);
    items.push(
      db.all<InHand>(sql`
        UPDATE variations SET
          -- Never shortened: a late round trip (executed after the runner's next one) must not move back the lease the
          -- later heartbeat wrote.
          lease_expires_at = max(coalesce(lease_expires_at, 0), ${now + leaseMs}),
          progress = coalesce((SELECT json_extract(b.value, '$.p') FROM json_each(${json}) b WHERE b.key = variations.id), progress)
        WHERE runner_id = ${runnerId} AND status = 'running'
          AND claims = (SELECT json_extract(b.value, '$.a') FROM json_each(${json}) b WHERE b.key = variations.id)
        RETURNING id, claims AS attempt`),
      db.all<{ jobId: string }>(sql`
        SELECT DISTINCT v.job_id AS jobId FROM variations v JOIN jobs j ON j.id = v.job_id
        WHERE v.runner_id = ${runnerId} AND v.status = 'running' AND ${JOB_REFUSES_WORK}`),
    );
  }
  const limit = Math.max(0, input.claim ?? 0);
  if (limit > 0) {
    items.push(reapStatement(db, now));
    for (let i = 0; i < limit; i++) items.push(claimStatement(db, { runnerId, leaseMs, now }));
    items.push(jobsToProcessingStatement(db, now));
  }
  if (input.beat) items.push(runnerBeatStatement(db, input.beat, now));
  if (items.length === 0) return { heartbeat: null, claim: null, stranded: [] };

  const results = await batchOf(db, items);
  let i = 0;
  const stranded: RoundTripResult["stranded"] = [];
  if (input.inHand) stranded.push(...(results[i++] as RoundTripResult["stranded"]), ...(results[i++] as RoundTripResult["stranded"]));
  let heartbeat: HeartbeatResult | null = null;
  if (hb) {
    heartbeat = {
      owned: results[i++] as InHand[],
      cancelJobIds: (results[i++] as { jobId: string }[]).map((r) => r.jobId),
    };
  }
  let claim: ClaimResult | null = null;
  const touched = new Set(stranded.filter((s) => s.status !== "expired").map((s) => s.jobId));
  if (limit > 0) {
    const reaped = results[i++] as ClaimResult["reaped"];
    const claimed = (results.slice(i, i + limit) as ClaimedVariation[][]).flat();
    claim = { claimed, reaped };
    for (const r of reaped) touched.add(r.jobId);
  }
  // After the batch, not in it: which jobs were touched is only known from its reply. A finalize that fails here
  // must not lose the claims that committed (the runner would strand them): the edge cron's finalizeIdleJobs is
  // the backstop for a job left active with nothing active in it.
  await finalizeJobs(db, touched, now).catch(() => {});
  return { heartbeat, claim, stranded };
}

/** Claims up to `limit` variations in one round trip (see {@link runnerRoundTrip}). */
export async function claimVariations(
  db: Db,
  input: { runnerId: string; leaseMs: number; now: number; limit?: number; beat?: RunnerBeat },
): Promise<ClaimResult> {
  const { claim } = await runnerRoundTrip(db, { ...input, claim: Math.max(1, input.limit ?? 1) });
  return claim!;
}

/** Claims the oldest claimable variation for this runner, or returns null when there is none. */
export async function claimVariation(
  db: Db,
  input: { runnerId: string; leaseMs: number; now: number },
): Promise<ClaimedVariation | null> {
  const { claimed } = await claimVariations(db, { ...input, limit: 1 });
  return claimed[0] ?? null;
}

/** The busy runner's heartbeat alone (see {@link runnerRoundTrip}). */
export async function heartbeatVariations(
  db: Db,
  input: { runnerId: string; now: number; leaseMs: number; variations: (InHand & { progress?: number | null })[]; beat?: RunnerBeat },
): Promise<HeartbeatResult> {
  const { heartbeat } = await runnerRoundTrip(db, input);
  return heartbeat ?? { owned: [], cancelJobIds: [] };
}
