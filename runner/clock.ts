import type { Logger } from "./log";

/**
 * How far this runner's clock may be from the database's. Leases are written with each runner's clock and compared
 * with the others' (and the edge's): a runner ahead by about a lease takes over live leases of other runners (their
 * encodes are thrown away, attempts burn to "runner lost"), one behind has its own taken. Half a lease keeps clear
 * of both; 5 s at least, so a slow round trip on a loaded machine is not mistaken for a wrong clock.
 */
export const maxClockSkewMs = (leaseMs: number) => Math.max(5_000, leaseMs / 2);

/**
 * The database's clock minus this runner's, from one round trip: `dbNow` was read somewhere between `sentAt` and
 * `receivedAt` (this runner's clock), so the midpoint is the best guess and half the round trip the uncertainty.
 */
export function clockSkew(sentAt: number, receivedAt: number, dbNow: number): { skewMs: number; uncertaintyMs: number } {
  return { skewMs: Math.round(dbNow - (sentAt + receivedAt) / 2), uncertaintyMs: Math.round((receivedAt - sentAt) / 2) };
}

/** This runner's clock against the database's, checked on every round trip; while it is off, the runner claims nothing. */
export class ClockCheck {
  /** The last measured skew (database − runner, ms), null before the first. */
  skewMs: number | null = null;
  off = false;
  private lastLogAt = 0;

  constructor(
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  observe(sentAt: number, receivedAt: number, dbNow: number): void {
    const max = maxClockSkewMs(this.leaseMs);
    const { skewMs, uncertaintyMs } = clockSkew(sentAt, receivedAt, dbNow);
    // A round trip this slow cannot tell a wrong clock from a slow answer: it changes nothing.
    if (uncertaintyMs > max / 2) return;
    this.skewMs = skewMs;
    const off = Math.abs(skewMs) - uncertaintyMs > max;
    if (off && (!this.off || receivedAt - this.lastLogAt > 30_000)) {
      this.lastLogAt = receivedAt;
      this.log.error("this machine's clock is off from the database's: not claiming until it is synced (NTP)", { skew_ms: skewMs, max_skew_ms: max });
    } else if (!off && this.off) {
      this.log.info("clock in step with the database's again: claiming", { skew_ms: skewMs });
    }
    this.off = off;
  }
}
