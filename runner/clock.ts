import type { Logger } from "./log";

/**
 * How far this runner's clock may be from the edge's. Leases are written with each runner's clock and compared with
 * the other runners' and the edge's (its cron hands expired leases back; its object routes check them): a runner
 * ahead by about a lease takes over live leases of other runners (their encodes are thrown away, attempts burn to
 * "runner lost"), one behind has its own taken. Half a lease keeps clear of both; 5 s at least, so a slow answer on
 * a loaded machine is not mistaken for a wrong clock.
 */
export const maxClockSkewMs = (leaseMs: number) => Math.max(5_000, leaseMs / 2);

/**
 * The edge's clock minus this runner's, from one request: `edgeNow` was read somewhere between `sentAt` and
 * `receivedAt` (this runner's clock), so the midpoint is the best guess and half the round trip the uncertainty.
 */
export function clockSkew(sentAt: number, receivedAt: number, edgeNow: number): { skewMs: number; uncertaintyMs: number } {
  return { skewMs: Math.round(edgeNow - (sentAt + receivedAt) / 2), uncertaintyMs: Math.round((receivedAt - sentAt) / 2) };
}

/**
 * This runner's clock against the edge's; while it is off, the runner claims nothing. Off when surely beyond the
 * limit, in step again only when surely within 80 % of it: a clock drifting across the limit does not make claims
 * and /healthz flip with every answer's jitter.
 */
export class ClockCheck {
  /** The last measured skew (edge − runner, ms), null before the first. */
  skewMs: number | null = null;
  off = false;
  private lastLogAt = -Infinity;

  constructor(
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  observe(sentAt: number, receivedAt: number, edgeNow: number): void {
    const max = maxClockSkewMs(this.leaseMs);
    const { skewMs, uncertaintyMs } = clockSkew(sentAt, receivedAt, edgeNow);
    // An answer this slow cannot tell a wrong clock from a slow edge: it changes nothing.
    if (uncertaintyMs > max / 2) return;
    this.skewMs = skewMs;
    const surelyOff = Math.abs(skewMs) - uncertaintyMs > max;
    const surelyIn = Math.abs(skewMs) + uncertaintyMs < 0.8 * max;
    if (!this.off && surelyOff) {
      this.off = true;
    } else if (this.off && surelyIn) {
      this.off = false;
      this.log.info("clock in step with the edge's again: claiming", { skew_ms: skewMs });
      return;
    }
    if (this.off && receivedAt - this.lastLogAt > 30_000) {
      this.lastLogAt = receivedAt;
      this.log.error("this machine's clock is off from the edge's: not claiming until it is synced (NTP)", { skew_ms: skewMs, max_skew_ms: max });
    }
  }
}
