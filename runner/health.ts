import type { BlobClient } from "./blobs";
import { childUidsLeft } from "./child-env";
import type { ClockCheck } from "./clock";
import type { RunnerConfig } from "./config";

/** What /healthz answers (200 while `ok`, else 503). A type, not an interface: the metrics server takes a record. */
export type RunnerHealth = {
  ok: boolean;
  runnerId: string;
  active: number;
  ffmpeg: number;
  stopping: boolean;
  lastDbOkMsAgo: number;
  edgeRefusesToken: boolean;
  clockSkewMs: number | null;
  ffmpegUidsLeft: number | null;
};

/** The runner's health from its state: `lastDbOkAt` is 0 until the first database answer. */
export function runnerHealth(s: {
  config: RunnerConfig;
  blobs: BlobClient;
  clock: ClockCheck;
  lastDbOkAt: number;
  stopping: boolean;
  active: number;
  ffmpeg: number;
}): RunnerHealth {
  const { config, blobs } = s;
  const ago = Date.now() - s.lastDbOkAt;
  const limit = Math.max(config.LEASE_MS, 5 * Math.max(config.POLL_MS, config.WATCH_MS));
  const uidsLeft = childUidsLeft();
  return {
    ok: s.lastDbOkAt > 0 && ago < limit && !s.stopping && !blobs.tokenRefused && !s.clock.off && uidsLeft !== 0,
    edgeRefusesToken: blobs.tokenRefused,
    clockSkewMs: s.clock.skewMs,
    ffmpegUidsLeft: uidsLeft,
    runnerId: config.RUNNER_ID,
    active: s.active,
    ffmpeg: s.ffmpeg,
    stopping: s.stopping,
    lastDbOkMsAgo: ago,
  };
}
