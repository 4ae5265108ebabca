import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { JOB_ACCEPTS_WORK } from "../states";
import type { JobRow } from "./present";

/** Where a job stands: how much work is ahead of it and roughly when it will be done. */
export interface QueueEstimate {
  /** Queued jobs only: variations of other jobs that runners will start before this job's first one. */
  queuePosition: number | null;
  /** Queued and processing jobs: seconds until the job is done, or null while no runner is online or no
   *  variation completed recently (nothing to base an estimate on). */
  etaSeconds: number | null;
}

/** Encodes that finished this recently describe the current throughput (machines, clip lengths). */
export const ETA_WINDOW_MS = 30 * 60_000;
/** A runner seen within this long counts as online (it beats every POLL_MS/WATCH_MS, ≤ a few seconds). */
export const RUNNER_ONLINE_MS = 30_000;

interface Pending {
  id: string;
  userId: string;
  createdAt: number;
  seq: number;
  queued: number;
  running: number;
  /** Work left in the running variations, in variations (a variation at 40 % leaves 0.6). */
  runningLeft: number;
}

/** The shared half of every estimate: each job's pending work, the recent throughput and the online slots. */
export interface QueueSnapshot {
  pending: Pending[];
  meanMs: number;
  slots: number;
}

/** Where an estimate gets its snapshot: a fresh read by default; the edge passes one it shares for a moment. */
export type QueueSnapshotSource = (db: Db, now: number) => Promise<QueueSnapshot>;

/** A job's own pending work, read with the job itself: fresher than a shared snapshot. */
export interface OwnWork {
  queued: number;
  running: number;
  runningLeft: number;
}

/** Own work from a job's variations (status and progress, as the view loads them). */
export function ownWorkOf(rows: readonly { status: string; progress: number | null }[]): OwnWork {
  const own = { queued: 0, running: 0, runningLeft: 0 };
  for (const v of rows) {
    if (v.status === "queued") own.queued++;
    if (v.status === "running") {
      own.running++;
      own.runningLeft += 1 - Math.min(v.progress ?? 0, 100) / 100;
    }
  }
  return own;
}

/**
 * The three reads behind every estimate: the pending work of every job that accepts work (bounded by the per-user
 * limits, but every user's), the mean encode time of recently completed variations, and the slots of online runners.
 */
export async function readQueueSnapshot(db: Db, now: number): Promise<QueueSnapshot> {
  const [pendingRows, encodeRows, slotRows] = await db.batch([
    db.all<Pending>(sql`
      SELECT j.id AS id, j.user_id AS userId, j.created_at AS createdAt, j.rowid AS seq,
        sum(CASE WHEN v.status = 'queued' THEN 1 ELSE 0 END) AS queued,
        sum(CASE WHEN v.status = 'running' THEN 1 ELSE 0 END) AS running,
        coalesce(sum(CASE WHEN v.status = 'running' THEN 1 - min(v.progress, 100) / 100.0 ELSE 0 END), 0) AS runningLeft
      FROM jobs j JOIN variations v ON v.job_id = j.id AND v.status IN ('queued', 'running')
      WHERE ${JOB_ACCEPTS_WORK}
      GROUP BY j.id`),
    // Recent completions, found through the (status, created_at) index: a job created over a day ago whose
    // variations finished in the window is rare and only makes the sample smaller.
    db.all<{ n: number; meanMs: number | null }>(sql`
      SELECT count(*) AS n, avg(finished_at - started_at) AS meanMs FROM variations
      WHERE status = 'completed' AND created_at > ${now - 24 * 3600_000} AND finished_at > ${now - ETA_WINDOW_MS}
        AND started_at IS NOT NULL`),
    db.all<{ slots: number }>(sql`
      SELECT coalesce(sum(concurrency), 0) AS slots FROM runners WHERE last_seen_at > ${now - RUNNER_ONLINE_MS}`),
  ]);
  return {
    pending: pendingRows.map((p) => ({
      ...p,
      createdAt: Number(p.createdAt),
      seq: Number(p.seq),
      queued: Number(p.queued),
      running: Number(p.running),
      runningLeft: Number(p.runningLeft),
    })),
    meanMs: Number(encodeRows[0]?.meanMs ?? 0),
    slots: Number(slotRows[0]?.slots ?? 0),
  };
}

/**
 * Estimates for the given jobs (those that are queued or processing; others get nulls). The snapshot comes from
 * `opts.snapshot` (the edge shares one for a moment: its first read covers every user's pending work, so reading it
 * per poll of every user would grow with the square of the users). With `opts.own` (each target's own work, read with
 * it) the targets are current in it, whatever the snapshot remembers: their own work replaces the snapshot's, and one
 * that does not take work now (paused, cancelling, finished, its owner disabled: JOB_ACCEPTS_WORK, read here by id) is
 * taken out, so neither it nor a job behind it looks as it did before it was created, resumed, paused or cancelled.
 */
export async function estimateQueue(
  db: Db,
  targets: JobRow[],
  now: number,
  opts: { snapshot?: QueueSnapshotSource; own?: ReadonlyMap<string, OwnWork> } = {},
): Promise<Map<string, QueueEstimate>> {
  if (!targets.some(isEstimated)) return estimateFrom({ pending: [], meanMs: 0, slots: 0 }, targets);
  const ids = targets.map((j) => j.id);
  const [snapshot, accepting] = await Promise.all([
    (opts.snapshot ?? readQueueSnapshot)(db, now),
    opts.own
      ? db.all<{ id: string }>(sql`SELECT j.id AS id FROM jobs j WHERE j.id IN ${ids} AND ${JOB_ACCEPTS_WORK}`)
      : Promise.resolve(null),
  ]);
  const current = opts.own && accepting ? { own: opts.own, accepting: new Set(accepting.map((r) => r.id)) } : undefined;
  return estimateFrom(snapshot, targets, current);
}

const isEstimated = (j: JobRow) => j.status === "queued" || j.status === "processing";

/**
 * The estimates from a snapshot (pure).
 *
 * The model follows the claim (db/queries/variations/claim.ts): users take turns, one user's jobs go oldest
 * first. So before this job's first variation a runner starts this user's older queued work, and from every other
 * user about as many (at most all they have queued, plus one turn when they hold an older job). The ETA adds the
 * work left in running encodes and divides by the throughput slots / mean encode time; never below one mean
 * encode for what this job still has to do.
 */
export function estimateFrom(
  snapshot: QueueSnapshot,
  targets: JobRow[],
  current?: { own: ReadonlyMap<string, OwnWork>; accepting: ReadonlySet<string> },
): Map<string, QueueEstimate> {
  const out = new Map<string, QueueEstimate>();
  const active = targets.filter(isEstimated);
  for (const j of targets) out.set(j.id, { queuePosition: null, etaSeconds: null });
  if (active.length === 0) return out;

  let pending = snapshot.pending;
  if (current) {
    const byId = new Map(pending.map((p) => [p.id, p]));
    for (const j of targets) {
      const w = current.own.get(j.id);
      const was = byId.get(j.id);
      // One the snapshot has not seen yet (created or resumed since) is the newest.
      if (current.accepting.has(j.id) && w) byId.set(j.id, { id: j.id, userId: j.userId, createdAt: j.createdAt, seq: was?.seq ?? Number.MAX_SAFE_INTEGER, ...w });
      else if (!current.accepting.has(j.id)) byId.delete(j.id);
    }
    pending = [...byId.values()];
  }
  const { meanMs, slots } = snapshot;
  const perSecond = meanMs > 0 && slots > 0 ? slots / (meanMs / 1000) : null;

  for (const job of active) {
    const me = pending.find((p) => p.id === job.id);
    const mine = { queued: me?.queued ?? 0, left: (me?.queued ?? 0) + (me?.runningLeft ?? 0) };
    const older = (p: Pending) => p.createdAt < job.createdAt || (p.createdAt === job.createdAt && p.seq < (me?.seq ?? Infinity));
    const ownOlder = pending
      .filter((p) => p.userId === job.userId && p.id !== job.id && older(p))
      .reduce((n, p) => n + p.queued, 0);
    const others = new Map<string, { queued: number; hasOlder: boolean }>();
    for (const p of pending) {
      if (p.userId === job.userId) continue;
      const o = others.get(p.userId) ?? { queued: 0, hasOlder: false };
      o.queued += p.queued;
      o.hasOlder ||= older(p);
      others.set(p.userId, o);
    }
    let position = ownOlder;
    let aheadUntilDone = ownOlder;
    for (const o of others.values()) {
      position += Math.min(o.queued, ownOlder + (o.hasOlder ? 1 : 0));
      aheadUntilDone += Math.min(o.queued, ownOlder + Math.ceil(mine.left));
    }
    const inSlots = pending.filter((p) => p.id !== job.id).reduce((n, p) => n + p.runningLeft, 0);
    let eta: number | null = null;
    if (perSecond !== null) {
      const work = inSlots + aheadUntilDone + mine.left;
      eta = Math.max(work / perSecond, mine.left > 0 ? (meanMs / 1000) * Math.min(1, mine.left) : 0);
    }
    out.set(job.id, {
      queuePosition: job.status === "queued" && (me?.running ?? 0) === 0 ? position : null,
      etaSeconds: eta === null ? null : Math.round(eta),
    });
  }
  return out;
}
