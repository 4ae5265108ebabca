import { call, TERMINAL, timeout, type Api, type Job } from "./client";
import type { Bar, Progress } from "./progress";

export interface WatchOptions {
  intervalMs: number;
  /** Called with every reading (after the bars are updated). */
  onJob?: (job: Job) => void;
}

/**
 * Polls GET /api/jobs/:id, one bar per source file (percent), until the job is terminal — or paused: nothing moves
 * until someone resumes it, so waiting on would never end. Returns the last reading.
 */
export async function watchJob(api: Api, url: string, id: string, progress: Progress, opts: WatchOptions): Promise<Job> {
  const bars = new Map<string, Bar>();
  let lastStatus = "";
  for (;;) {
    const { data: job } = await call(url, api.GET("/api/jobs/{id}", { params: { path: { id } }, signal: timeout() }));
    if (job.status !== lastStatus) {
      progress.log(`job ${job.id}: ${job.status}`);
      lastStatus = job.status;
    }
    for (const file of job.files) {
      let bar = bars.get(file.id);
      if (!bar) {
        bar = progress.bar(file.name, 100, "percent");
        bars.set(file.id, bar);
      }
      bar.update(Math.round(file.progress), `${file.status} ${file.completedVariations}/${file.variations?.length ?? job.variationsPerVideo}`);
    }
    opts.onJob?.(job);
    if (TERMINAL.has(job.status) || job.status === "paused") return job;
    await new Promise((r) => setTimeout(r, opts.intervalMs));
  }
}

/** One line per job for people: status, progress, variations. */
export function describeJob(job: Job): string {
  const counts = `${job.completedVariations}/${job.totalVariations} done` +
    (job.failedVariations ? `, ${job.failedVariations} failed` : "") +
    (job.cancelledVariations ? `, ${job.cancelledVariations} cancelled` : "");
  const lines = [`${job.id}  ${job.status}  ${Math.round(job.progress)}%  (${counts})`];
  if (job.error) lines.push(`  error: ${job.error}`);
  if (job.cancelReason) lines.push(`  cancel reason: ${job.cancelReason}${job.cancelledBy ? ` (by ${job.cancelledBy})` : ""}`);
  for (const f of job.files) {
    lines.push(`  ${f.name}  ${f.status}  ${Math.round(f.progress)}%  ${f.completedVariations} done${f.error ? `  error: ${f.error}` : ""}`);
  }
  if (job.downloadUrl) lines.push(`  download: video-refresher download ${job.id}`);
  return lines.join("\n");
}
