/**
 * The JSON shapes of the Edge API as the browser sees them (issue 4's contract). Kept here, DOM-free, so the
 * server-rendered pages and the client code agree on one definition.
 */
export type JobStatus = "queued" | "processing" | "paused" | "cancelling" | "completed" | "failed" | "cancelled";
export type VariationStatus = "queued" | "running" | "completed" | "failed" | "cancelled";

export interface Variation {
  index: number;
  status: VariationStatus;
  progress: number;
  params: unknown;
  outputId: string | null;
  outputSize: number | null;
  error: string | null;
  /** Absent in answers of an older edge (a stale tab). */
  quality?: { ssim: number | null; psnr: number | null; distinct: number | null };
  redraws?: number;
  redrawReason?: string | null;
  thumbnailUrl?: string | null;
}

export interface JobFile {
  id: string;
  name: string;
  size: number;
  status: string;
  progress: number;
  completedVariations: number;
  error: string | null;
  /** Absent in list responses ("Job without variations"). */
  variations?: Variation[];
}

export interface JobEffects {
  intensity: string;
  families: string[];
}

export interface Job {
  id: string;
  status: JobStatus;
  previousStatus?: JobStatus | null;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  cancelledAt: string | null;
  cancelReason: string | null;
  /** Email of the user who asked for the cancel. */
  cancelledBy: string | null;
  expiresAt: string | null;
  variationsPerVideo: number;
  /** What every variation applies (names and explanations: db/effects.ts). */
  effects: JobEffects;
  totalVariations: number;
  completedVariations: number;
  failedVariations: number;
  cancelledVariations: number;
  progress: number;
  error: string | null;
  downloadUrl: string | null;
  thumbnailUrl: string | null;
  /** Queued jobs: variations of other jobs ahead of this one's first; else null. */
  queuePosition: number | null;
  /** Queued/processing jobs: estimated seconds until done; null when unknown. */
  etaSeconds: number | null;
  files: JobFile[];
}

export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

export interface BulkCancelResult {
  results: { id: string; status: JobStatus | null; previousStatus: JobStatus | null; error?: "not_found" | "not_cancellable" }[];
}

export interface Me {
  user: { id: string; email: string; role: "admin" | "user" };
}

export interface ApiErrorBody {
  error?: { code?: string; message?: string; field?: string };
  job?: Job;
}

export interface TokenRow {
  id: string;
  name: string;
  createdAt?: string | null;
  lastUsedAt?: string | null;
}

export interface UserRow {
  id: string;
  email: string;
  role: "admin" | "user";
  createdAt?: string | null;
}
