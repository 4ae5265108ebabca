import { errorMessage, type Logger } from "./log";

export interface TickerOptions {
  /** One tick: one database round trip. */
  tick: () => Promise<void>;
  /** The period until the next tick, asked after each one (WATCH_MS while busy, POLL_MS while idle). */
  intervalMs: () => number;
  /** Once true, no tick is scheduled or run again after the one in flight. */
  stopping: () => boolean;
  log: Logger;
}

/** Runs the runner's ticks: one at a time, at a fixed rate, or right away when asked. */
export class Ticker {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private lastStart = 0;

  constructor(private readonly opts: TickerOptions) {}

  /** The tick in flight (settles, never rejects), or null. */
  get inFlight(): Promise<void> | null {
    return this.running;
  }

  /** Runs a tick now, or right after the one in flight (ticks never overlap: one round trip at a time). */
  run(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.lastStart = performance.now();
    this.running = this.opts
      .tick()
      .catch((err) => this.opts.log.error("tick failed", { error: errorMessage(err) }))
      .finally(() => {
        this.running = null;
        if (this.again && !this.opts.stopping()) {
          this.again = false;
          this.run();
        } else {
          this.schedule();
        }
      });
  }

  /** Shutdown: the next tick's timer goes (the tick in flight, if any, schedules none once stopping). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.opts.stopping()) return;
    if (this.timer) clearTimeout(this.timer);
    const interval = this.opts.intervalMs();
    // Fixed rate, not fixed delay: the round trip's own duration must not stretch the cancel-watch period.
    const delay = Math.max(0, this.lastStart + interval - performance.now());
    this.timer = setTimeout(() => this.run(), delay);
  }
}
