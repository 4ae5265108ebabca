/**
 * Status polling with back-off: 2 s, growing ×1.5 while nothing changes up to 10 s, ±20 % jitter so many open
 * tabs do not hit the edge in lock-step; paused while the tab is hidden, stopped on a terminal status.
 * DOM-free (the host is injected) so the timing rules are unit-tested without a browser.
 */
export type PollOutcome = "changed" | "unchanged" | "terminal" | "error";

export interface PollHost {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  isHidden(): boolean;
  /** Subscribes to visibility changes; returns the unsubscribe function. */
  onVisibilityChange(fn: () => void): () => void;
  random(): number;
}

export interface PollerOptions {
  tick: () => Promise<PollOutcome>;
  minMs?: number;
  maxMs?: number;
  factor?: number;
  jitter?: number;
  /**
   * While the tab is hidden polling pauses, unless this returns a delay: the notification watcher uses it to
   * keep one slow request going so "job finished" can be announced in the background.
   */
  hiddenDelayMs?: () => number | null;
}

export const POLL_MIN_MS = 2_000;
export const POLL_MAX_MS = 10_000;

export function nextBase(base: number, outcome: PollOutcome, min = POLL_MIN_MS, max = POLL_MAX_MS, factor = 1.5): number {
  if (outcome === "changed") return min;
  return Math.min(max, Math.max(min, base * factor));
}

export function withJitter(ms: number, random: number, jitter = 0.2): number {
  return Math.round(ms * (1 - jitter + 2 * jitter * random));
}

export class Poller {
  private readonly min: number;
  private readonly max: number;
  private readonly factor: number;
  private readonly jitter: number;
  private base: number;
  private timer: unknown = null;
  private inFlight = false;
  private kickPending = false;
  private stopped = true;
  private unsubscribe: (() => void) | null = null;
  /** Delays actually scheduled, newest last (kept short; for tests and debugging). */
  readonly scheduled: number[] = [];

  constructor(
    private readonly opts: PollerOptions,
    private readonly host: PollHost,
  ) {
    this.min = opts.minMs ?? POLL_MIN_MS;
    this.max = opts.maxMs ?? POLL_MAX_MS;
    this.factor = opts.factor ?? 1.5;
    this.jitter = opts.jitter ?? 0.2;
    this.base = this.min;
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Starts polling; the first request goes out after the minimum delay (the page has just rendered fresh data). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.base = this.min;
    this.unsubscribe = this.host.onVisibilityChange(() => this.visibilityChanged());
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.clear();
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** Poll now and reset the back-off: the user just did something (cancel) whose effect they are waiting for. */
  kick(): void {
    if (this.stopped) {
      this.start();
    }
    this.base = this.min;
    this.clear();
    if (this.inFlight) this.kickPending = true;
    else void this.run();
  }

  private clear(): void {
    if (this.timer !== null) this.host.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.clear();
    let delay: number | null;
    if (this.host.isHidden()) {
      delay = this.opts.hiddenDelayMs?.() ?? null;
      if (delay === null) return; // paused until visible again
    } else {
      delay = withJitter(this.base, this.host.random(), this.jitter);
    }
    this.scheduled.push(delay);
    if (this.scheduled.length > 50) this.scheduled.shift();
    this.timer = this.host.setTimeout(() => void this.run(), delay);
  }

  private async run(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    this.inFlight = true;
    let outcome: PollOutcome;
    try {
      outcome = await this.opts.tick();
    } catch {
      outcome = "error";
    }
    this.inFlight = false;
    if (outcome === "terminal") {
      this.stop();
      return;
    }
    this.base = nextBase(this.base, outcome, this.min, this.max, this.factor);
    if (this.kickPending) {
      this.kickPending = false;
      this.base = this.min;
      void this.run();
      return;
    }
    this.schedule();
  }

  private visibilityChanged(): void {
    if (this.stopped) return;
    if (this.host.isHidden()) {
      this.schedule();
    } else {
      // Back in view: refresh at once rather than showing up-to-10-s-old state.
      this.base = this.min;
      this.clear();
      if (!this.inFlight) void this.run();
    }
  }
}
