import type { Logger } from "./log";

/**
 * SIGTERM/SIGINT → graceful shutdown, then exit 0. A second signal kills every FFmpeg at once and exits as soon
 * as the hand-back finishes (or after a short bound).
 */
export function installSignalHandlers(opts: {
  log: Logger;
  shutdown: () => Promise<void>;
  killNow: () => void;
  exit?: (code: number) => void;
}): void {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      opts.log.info("signal received: graceful shutdown", { signal });
      opts.shutdown().then(
        () => exit(0),
        (err) => {
          opts.log.error("shutdown failed", { error: err instanceof Error ? err.message : String(err) });
          exit(1);
        },
      );
      return;
    }
    if (signals === 2) {
      opts.log.warn("second signal: killing FFmpeg processes now", { signal });
      opts.killNow();
      setTimeout(() => exit(1), 1500).unref();
    }
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
