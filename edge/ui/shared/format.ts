import type { Job, JobFile, JobStatus, VariationStatus } from "./types.js";

export const TERMINAL_STATUSES: readonly JobStatus[] = ["completed", "failed", "cancelled"];

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Queued, processing and paused jobs offer Cancel; a cancelling job already has a request in flight. */
export function isCancellable(status: JobStatus): boolean {
  return status === "queued" || status === "processing" || status === "paused";
}

/** Only queued and processing jobs offer Pause. */
export function isPausable(status: JobStatus): boolean {
  return status === "queued" || status === "processing";
}

/** Paused jobs resume; cancelled ones continue (their cancelled and failed variations are queued again) until they expire. */
export function isResumable(job: Pick<Job, "status" | "cancelledVariations" | "failedVariations" | "expiresAt">, now: number): boolean {
  if (job.status === "paused") return true;
  return job.status === "cancelled" && job.cancelledVariations + job.failedVariations > 0 && !isExpired(job.expiresAt, now);
}

/** "Retry failed": a completed or failed job with failed variations, before it expires. */
export function canRetryFailed(job: Pick<Job, "status" | "failedVariations" | "expiresAt">, now: number): boolean {
  return (job.status === "completed" || job.status === "failed") && job.failedVariations > 0 && !isExpired(job.expiresAt, now);
}

/** "More variations": any finished job before it expires. */
export function canAddVariations(job: Pick<Job, "status" | "expiresAt">, now: number): boolean {
  return isTerminal(job.status) && !isExpired(job.expiresAt, now);
}

function isExpired(expiresAt: string | null, now: number): boolean {
  return expiresAt !== null && Date.parse(expiresAt) <= now;
}

/** Variations running in a job read with its files' variations (a paused job's runners are still stopping). */
export function runningVariations(job: Pick<Job, "files">): number {
  return job.files.reduce((n, f) => n + (f.variations?.filter((v) => v.status === "running").length ?? 0), 0);
}

export type Tone = "neutral" | "info" | "success" | "danger";

/** Cancelled and paused are neutral gray on purpose: the user asked for it, it is not a failure (red). */
export function statusTone(status: JobStatus | VariationStatus): Tone {
  switch (status) {
    case "completed":
      return "success";
    case "failed":
      return "danger";
    case "queued":
    case "processing":
    case "running":
      return "info";
    default:
      return "neutral";
  }
}

type Counts = Pick<Job, "status" | "completedVariations" | "totalVariations">;

/** The badge text: "Cancelled (3/10)" carries the count so partial results are visible at a glance. */
export function statusLabel(job: Counts): string {
  switch (job.status) {
    case "queued":
      return "Queued";
    case "processing":
      return "Processing";
    case "paused":
      return `Paused (${job.completedVariations}/${job.totalVariations})`;
    case "cancelling":
      return "Cancelling…";
    case "completed":
      return "Completed";
    case "failed":
      return "Failed";
    case "cancelled":
      return `Cancelled (${job.completedVariations}/${job.totalVariations})`;
  }
}

export function variationStatusLabel(status: VariationStatus): string {
  switch (status) {
    case "queued":
      return "Queued";
    case "running":
      return "Running";
    case "completed":
      return "Completed";
    case "failed":
      return "Failed";
    case "cancelled":
      return "Cancelled";
  }
}

export function countLabel(completed: number, total: number): string {
  return `${completed} of ${total} variation${total === 1 ? "" : "s"} completed`;
}

/** A ZIP is offered as soon as something finished is in it; the count next to it says how much. */
export function canDownloadZip(job: Pick<Job, "status" | "completedVariations" | "downloadUrl">): boolean {
  return (job.status === "completed" || job.status === "cancelled") && job.completedVariations > 0 && !!job.downloadUrl;
}

/** "a.mp4, b.mp4, c.mp4 +2 more" */
export function fileNamesSummary(names: readonly string[], shown = 3): string {
  if (names.length === 0) return "(no files)";
  const head = names.slice(0, shown).join(", ");
  return names.length > shown ? `${head} +${names.length - shown} more` : head;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Clamps whatever the API reports into 0..100 so a bar never overflows. */
export function percent(progress: number | null | undefined): number {
  if (typeof progress !== "number" || !Number.isFinite(progress)) return 0;
  return Math.max(0, Math.min(100, Math.round(progress)));
}

/** Countdown text for an expiry: "Expires in 23 h 12 min", "Expired". */
export function expiryLabel(expiresAt: string | null, now: number): string | null {
  if (!expiresAt) return null;
  const ms = Date.parse(expiresAt) - now;
  if (!Number.isFinite(ms)) return null;
  if (ms <= 0) return "Expired";
  return `Expires in ${durationLabel(ms)}`;
}

export function durationLabel(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 1) return "less than a minute";
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${mins} min`;
  return `${mins} min`;
}

/**
 * Where a waiting or running job stands, in words: "3 ahead in the queue · about 4 min left", "next in the
 * queue", "about 12 min left"; null for finished jobs or when the API has nothing to say. Lower-case: the list
 * shows it after the variation count, and the detail page capitalises its line with CSS.
 */
export function queueLabel(job: Pick<Job, "status" | "queuePosition" | "etaSeconds">): string | null {
  if (isTerminal(job.status) || job.status === "cancelling") return null;
  const eta = job.etaSeconds === null ? null : job.etaSeconds < 60 ? "less than a minute left" : `about ${durationLabel(job.etaSeconds * 1000)} left`;
  const place = job.queuePosition === null ? null : job.queuePosition === 0 ? "next in the queue" : `${job.queuePosition} ahead in the queue`;
  const text = [place, eta].filter(Boolean).join(" · ");
  return text || null;
}

/** "5 min ago" style, for created times in the list (the exact time goes in a tooltip / datetime attribute). */
export function agoLabel(iso: string, now: number): string {
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return "";
  if (ms < 60_000) return "just now";
  return `${durationLabel(ms)} ago`;
}

/**
 * Where to go after login. Only same-origin paths are allowed ("/jobs/abc"), never "//evil.example" or
 * "/\evil.example", which browsers treat as other origins: an open redirect would make phishing trivial.
 */
export function safeNext(next: string | null | undefined, fallback = "/jobs"): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return fallback;
  if (/[\u0000-\u001f]/.test(next)) return fallback;
  if (next.startsWith("/login")) return fallback;
  return next;
}

/** The name one variation downloads as from the job page: `<base>_var01.mp4`. */
export function variationFileName(sourceName: string, index: number): string {
  // ASCII only, and short enough for a file system's 255-byte names.
  const base = sourceName.replace(/\.[^./\\]+$/, "").replace(/[^\w.-]+/g, "_").slice(0, 200) || "video";
  return `${base}_var${String(index).padStart(2, "0")}.mp4`;
}

/**
 * A file's badge. The API reports a file whose remaining variations were cancelled as "completed" (nothing left to
 * do); the badge says "Cancelled (k/N)" instead, so it agrees with the job's badge right above it.
 */
export function fileStatus(file: Pick<JobFile, "status" | "completedVariations" | "variations">, perVideo: number): { label: string; tone: Tone } {
  const vs = file.variations ?? [];
  const total = vs.length || perVideo;
  const cancelled = vs.some((v) => v.status === "cancelled");
  const active = vs.some((v) => v.status === "queued" || v.status === "running");
  if (file.status === "cancelled" || (cancelled && !active && file.status !== "failed")) {
    return { label: `Cancelled (${file.completedVariations}/${total})`, tone: "neutral" };
  }
  const label = file.status.charAt(0).toUpperCase() + file.status.slice(1);
  return { label, tone: statusTone(file.status as VariationStatus) };
}
