import { childUidsLeft, configureChildren, describeUser, killLeftovers } from "./child-env";
import type { RunnerConfig } from "./config";
import { detectZoomScaler, type ZoomScaler } from "./ffmpeg";
import { errorMessage, type Logger } from "./log";
import type { RunnerMetrics } from "./metrics";
import { checkFfmpegUser, claimWorkDir, DuplicateRunnerError, FfmpegUserError, refuseDuplicateRunner, WorkDirError } from "./workdir";

/** What the preflight found: how FFmpeg scales zooms and the process limit it runs with (for the start-up log). */
export interface Preflight {
  zoomScaler: ZoomScaler;
  limits: { nproc: number | null; nprocAsked: number | null };
}

/**
 * The start-up's local part, before the runner registers: how FFmpeg's children run, no live twin of this runner
 * id, nothing left running as FFmpeg's uids, this FFmpeg's zoom scaler, and this runner's own directory under
 * WORK_DIR taken (and emptied) with FFMPEG_USER able to use it. The order is a safety invariant (the comments say
 * why): nothing may touch a live twin's FFmpeg, and a stop that comes meanwhile finds nothing half started.
 */
export async function preflight(deps: { config: RunnerConfig; log: Logger; metrics: RunnerMetrics }): Promise<Preflight> {
  const { config, log, metrics } = deps;
  const limits = configureChildren({
    setpriv: config.SETPRIV_PATH,
    user: config.FFMPEG_USER,
    // One uid for all is shared by the encodes and what runs beside them (probes, measurements, thumbnails).
    nproc: config.PRLIMIT_PATH ? { prlimit: config.PRLIMIT_PATH, perRun: config.FFMPEG_MAX_PROCESSES, sharedBy: config.CONCURRENCY + 2 } : undefined,
    onWaiting: (n) => metrics.childrenWaiting.set(n),
    onQuarantine: (uid, survivors) => {
      log.error("processes of an FFmpeg uid survived SIGKILL: that uid is not used again", { uid, pids: survivors.join(",") });
      if (childUidsLeft() === 0) log.error("no FFmpeg uid left: this runner claims nothing more and /healthz answers 503 (restart it, or its host)");
    },
  });
  // First: a second start with the id of a live runner on this host must leave that runner's FFmpeg alone (the
  // kill below takes every process of the range's uids, whoever started it).
  await refuseDuplicateRunner(config.WORK_DIR, config.RUNNER_ID);
  // What a previous life of this runner's children left running as the range's uids (it still writes in WORK_DIR).
  const kept = await killLeftovers();
  // Something of the range that cannot be killed would share a uid with the uploads' FFmpeg (or the killer's).
  if (kept.length) throw new FfmpegUserError(`processes running as FFMPEG_USER's uids ${kept.join(", ")} survive SIGKILL; the runner will not use that range`);
  // Before registering: a stop asked meanwhile finds nothing half started.
  const zoomScaler = await detectZoomScaler(config.FFMPEG_PATH);
  try {
    const own = await claimWorkDir(config.WORK_DIR, config.RUNNER_ID, log);
    await checkFfmpegUser(config.FFMPEG_PATH, own);
  } catch (err) {
    if (err instanceof DuplicateRunnerError || err instanceof FfmpegUserError || err instanceof WorkDirError) throw err;
    throw new WorkDirError(`cannot use WORK_DIR ${config.WORK_DIR}: ${errorMessage(err)}`);
  }
  return { zoomScaler, limits };
}

/** "runner started", with what the preflight found, then what FFmpeg runs with that the operator should change. */
export function logStarted(config: RunnerConfig, workDir: string, found: Preflight, log: Logger): void {
  const { limits } = found;
  log.info("runner started", {
    id: config.RUNNER_ID,
    concurrency: config.CONCURRENCY,
    work_dir: workDir,
    poll_ms: config.POLL_MS,
    watch_ms: config.WATCH_MS,
    lease_ms: config.LEASE_MS,
    zoom_scaler: found.zoomScaler,
    ffmpeg_user: config.FFMPEG_USER ? describeUser(config.FFMPEG_USER) : "runner's own",
    ffmpeg_max_processes: limits.nproc ?? "none",
  });
  if (limits.nproc !== null && limits.nprocAsked !== null && limits.nproc < limits.nprocAsked) {
    log.warn("FFmpeg gets a lower process limit than FFMPEG_MAX_PROCESSES asks: the runner's own hard limit (raise the container's nproc ulimit)", {
      asked: limits.nprocAsked,
      applied: limits.nproc,
    });
  }
  if (!config.FFMPEG_USER && process.getuid?.() === 0) {
    log.warn("FFmpeg runs as root, with access to this runner's secrets: set FFMPEG_USER to run it as an unprivileged user");
  }
}
