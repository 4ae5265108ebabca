import { call, realSleep, TERMINAL, timeout, type Api, type Job } from "./client";
import { CliError, toCliError } from "./errors";
import { printable } from "./printable";
import { retryable } from "./upload";
import type { Bar, Progress } from "./progress";

export interface WatchOptions {
  intervalMs: number;
  /** Called with every reading (after the bars are updated). */
  onJob?: (job: Job) => void;
  /** How long polls may keep failing (network, 408, 429, 5xx) before the watch gives up (default WATCH_OUTAGE_MS). */
  outageMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * A watch rides out an edge or network outage this long: a `submit --wait` of a two-hour job must not end as
 * "failed" (exit 1) over one 503 or a deploy, and a script that then submits again makes a second job.
 */
export const WATCH_OUTAGE_MS = 10 * 60_000;

/**
 * Polls GET /api/jobs/:id, one bar per source file (percent), until the job is terminal — or paused: nothing moves
 * until someone resumes it, so waiting on would never end. Returns the last reading.
 */
export async function watchJob(api: Api, url: string, id: string, progress: Progress, opts: WatchOptions): Promise<Job> {
  const bars = new Map<string, Bar>();
  const sleep = opts.sleep ?? realSleep;
  const outageMs = opts.outageMs ?? WATCH_OUTAGE_MS;
  let lastStatus = "";
  let failingSince: number | null = null;
  for (let failures = 0; ; ) {
    let job: Job;
    try {
      job = (await call(url, api.GET("/api/jobs/{id}", { params: { path: { id } }, signal: timeout() }))).data;
    } catch (err) {
      failingSince ??= Date.now();
      if (!retryable(err)) throw aboutJob(err, id, "");
      if (Date.now() - failingSince >= outageMs) throw aboutJob(err, id, ` (job ${id} goes on on the server: video-refresher status ${id} --watch)`);
      failures++;
      const waitMs = Math.min(30_000, Math.max(opts.intervalMs, 1000 * 2 ** (failures - 1)));
      progress.log(`job ${id}: ${(err as Error).message}; polling again in ${Math.round(waitMs / 1000)} s`);
      await sleep(waitMs);
      continue;
    }
    failingSince = null;
    failures = 0;
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
    await sleep(opts.intervalMs);
  }
}

/** A watch that gave up says which job it was watching (and, after an outage, that the job goes on regardless). */
function aboutJob(err: unknown, id: string, note: string): CliError {
  const e = toCliError(err);
  return new CliError(`${e.message}${note}`, e.exitCode, e.code, e.status, { ...e.extra, jobId: id });
}

/** One line per job for people: status, progress, variations. */
export function describeJob(job: Job): string {
  const counts = `${job.completedVariations}/${job.totalVariations} done` +
    (job.failedVariations ? `, ${job.failedVariations} failed` : "") +
    (job.cancelledVariations ? `, ${job.cancelledVariations} cancelled` : "");
  // Each field printable on its own: a line break in a file name must not start a line of its own.
  const p = printable;
  const lines = [`${p(job.id)}  ${p(job.status)}  ${Math.round(job.progress)}%  (${counts})`];
  if (job.error) lines.push(`  error: ${p(job.error)}`);
  if (job.cancelReason) lines.push(`  cancel reason: ${p(job.cancelReason)}${job.cancelledBy ? ` (by ${p(job.cancelledBy)})` : ""}`);
  for (const f of job.files) {
    lines.push(`  ${p(f.name)}  ${p(f.status)}  ${Math.round(f.progress)}%  ${f.completedVariations} done${f.error ? `  error: ${p(f.error)}` : ""}`);
  }
  if (job.downloadUrl) lines.push(`  download: video-refresher download ${p(job.id)}`);
  return lines.join("\n");
}
