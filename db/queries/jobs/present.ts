import { parseStoredEffects, type JobEffects } from "../../effects";
import { jobs, sources, variations, TERMINAL_JOB_STATUSES, type JobStatus, type VariationStatus } from "../../schema";
import type { AuthenticatedUser } from "../sessions";
import type { QueueEstimate } from "./estimate-queue";

export type JobRow = typeof jobs.$inferSelect;
export type SourceRow = typeof sources.$inferSelect;
/** A variation row as presented (the fingerprint is never loaded for the API). */
export type VariationRow = Omit<typeof variations.$inferSelect, "fingerprint">;
/** Who is asking: ownership decides visibility (another user's job is "not found"); admins see every job. */
export type Viewer = AuthenticatedUser;

// API shape (the presenters below are the only place rows become the public Job)

export interface VariationView {
  index: number;
  status: VariationStatus;
  progress: number;
  params: Record<string, unknown> | null;
  outputId: string | null;
  outputSize: number | null;
  error: string | null;
  /** Measured by the runner on sampled frames (runner/quality.ts); each null until measured. */
  quality: { ssim: number | null; psnr: number | null; distinct: number | null };
  /** How many times the runner re-drew it with a new seed, and why (the last reason). */
  redraws: number;
  redrawReason: string | null;
  /** A still of this variation's output (completed variations whose runner stored one). */
  thumbnailUrl: string | null;
}
export type FileStatus = "queued" | "processing" | "completed" | "failed" | "cancelled";
export interface FileView {
  id: string;
  name: string;
  size: number;
  status: FileStatus;
  progress: number;
  completedVariations: number;
  error: string | null;
  variations?: VariationView[];
}
export interface JobView {
  id: string;
  status: JobStatus;
  previousStatus?: JobStatus;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  cancelledAt: string | null;
  cancelReason: string | null;
  cancelledBy: string | null;
  expiresAt: string | null;
  variationsPerVideo: number;
  /** What every variation of the job applies (db/effects.ts). */
  effects: JobEffects;
  totalVariations: number;
  completedVariations: number;
  failedVariations: number;
  cancelledVariations: number;
  progress: number;
  error: string | null;
  downloadUrl: string | null;
  thumbnailUrl: string | null;
  /** Queued jobs: variations of other jobs runners will start before this job's first one; else null. */
  queuePosition: number | null;
  /** Queued/processing jobs: estimated seconds until done (null when there is nothing to base it on). */
  etaSeconds: number | null;
  files: FileView[];
}

const TERMINAL = new Set<JobStatus>(TERMINAL_JOB_STATUSES);
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const round1 = (n: number): number => Math.round(n * 10) / 10;

/** Per source and status: how many variations and the sum of their progress. */
export interface StatusCount {
  sourceId: string;
  status: VariationStatus;
  n: number;
  progressSum: number;
}

function countsOf(rows: VariationRow[]): StatusCount[] {
  const map = new Map<string, StatusCount>();
  for (const v of rows) {
    const key = `${v.sourceId}\n${v.status}`;
    const c = map.get(key) ?? { sourceId: v.sourceId, status: v.status, n: 0, progressSum: 0 };
    c.n += 1;
    c.progressSum += v.progress;
    map.set(key, c);
  }
  return [...map.values()];
}

interface Tally {
  total: number;
  queued: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** Completed and failed variations count as 100; queued/running by their own progress; cancelled as 0. */
  progressPoints: number;
}

function tally(counts: StatusCount[]): Tally {
  const t: Tally = { total: 0, queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0, progressPoints: 0 };
  for (const c of counts) {
    t.total += c.n;
    t[c.status] += c.n;
    if (c.status === "completed" || c.status === "failed") t.progressPoints += 100 * c.n;
    else if (c.status === "queued" || c.status === "running") t.progressPoints += c.progressSum;
  }
  return t;
}

function fileStatus(t: Tally): FileStatus {
  if (t.running > 0) return "processing";
  if (t.queued > 0) return t.queued === t.total ? "queued" : "processing";
  if (t.completed > 0) return "completed";
  if (t.cancelled > 0) return "cancelled";
  return "failed";
}

function presentVariation(v: VariationRow): VariationView {
  let params: Record<string, unknown> | null = null;
  if (v.params) {
    try {
      params = JSON.parse(v.params) as Record<string, unknown>;
    } catch {
      params = null;
    }
  }
  const hasOutput = v.status === "completed" && v.outputKey !== null;
  return {
    index: v.position,
    status: v.status,
    progress: round1(v.status === "completed" ? 100 : v.progress),
    params,
    outputId: hasOutput ? v.id : null,
    outputSize: hasOutput ? v.outputSize : null,
    error: v.error,
    quality: { ssim: v.ssim, psnr: v.psnr, distinct: v.distinct },
    redraws: v.redraws,
    redrawReason: v.redrawReason,
    thumbnailUrl: hasOutput && v.thumbnailKey ? `/api/jobs/${v.jobId}/outputs/${v.id}/thumbnail` : null,
  };
}

/**
 * Renders a job as the public API shape. `variations` is null for list views (files then carry no variation
 * array); `counts` must describe every variation of the job.
 */
export function presentJob(
  job: JobRow,
  jobSources: SourceRow[],
  counts: StatusCount[],
  jobVariations: VariationRow[] | null,
  now: number,
  estimate?: QueueEstimate,
): JobView {
  const all = tally(counts);
  const files = [...jobSources]
    .sort((a, b) => a.position - b.position)
    .map((s): FileView => {
      const t = tally(counts.filter((c) => c.sourceId === s.id));
      const own = jobVariations?.filter((v) => v.sourceId === s.id).sort((a, b) => a.position - b.position);
      const firstError = t.completed === 0 && t.failed > 0 ? own?.find((v) => v.error)?.error : undefined;
      return {
        id: s.id,
        name: s.name,
        size: s.size,
        status: fileStatus(t),
        progress: t.total ? round1(t.progressPoints / t.total) : 0,
        completedVariations: t.completed,
        error: s.error ?? firstError ?? null,
        ...(own ? { variations: own.map(presentVariation) } : {}),
      };
    });
  const expired = job.expiresAt !== null && job.expiresAt <= now;
  const downloadable = (job.status === "completed" || job.status === "cancelled") && all.completed > 0 && !expired;
  return {
    id: job.id,
    status: job.status,
    createdAt: iso(job.createdAt)!,
    startedAt: iso(job.startedAt),
    completedAt: iso(job.completedAt),
    cancelledAt: iso(job.cancelledAt),
    cancelReason: job.cancelReason,
    cancelledBy: job.cancelledBy,
    expiresAt: iso(job.expiresAt),
    variationsPerVideo: job.variationsPerVideo,
    effects: parseStoredEffects(job.effects),
    totalVariations: job.totalVariations,
    completedVariations: all.completed,
    failedVariations: all.failed,
    cancelledVariations: all.cancelled,
    progress: job.status === "completed" ? 100 : all.total ? round1(all.progressPoints / all.total) : 0,
    error: job.error,
    downloadUrl: downloadable ? `/api/jobs/${job.id}/download` : null,
    thumbnailUrl: job.thumbnailKey ? `/api/jobs/${job.id}/thumbnail` : null,
    queuePosition: estimate?.queuePosition ?? null,
    etaSeconds: estimate?.etaSeconds ?? null,
    files,
  };
}

/** A job with all its rows, as the presenters need it. */
export interface JobRecord {
  job: JobRow;
  sources: SourceRow[];
  variations: VariationRow[];
}

export function presentRecord(r: JobRecord, now: number, previousStatus?: JobStatus, estimate?: QueueEstimate): JobView {
  const view = presentJob(r.job, r.sources, countsOf(r.variations), r.variations, now, estimate);
  return previousStatus ? { ...view, previousStatus } : view;
}
