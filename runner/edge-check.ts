import type { BlobClient } from "./blobs";
import type { ClockCheck } from "./clock";
import { within } from "./delay";
import { errorMessage, type Logger } from "./log";

/** How often the edge's clock and the token's acceptance are checked; more often while either is wrong. */
const EDGE_CHECK_MS = 60_000;
const EDGE_RECHECK_MS = 10_000;
const EDGE_CHECK_AT_START_MS = 3_000;

/**
 * Reads the edge's clock (an authenticated call): this runner's clock against it (runner/clock.ts), and whether
 * the edge takes RUNNER_TOKEN (the blob client keeps the answer). Either one wrong stops claims; /healthz says which.
 */
export class EdgeCheck {
  private running: Promise<void> | null = null;
  private checkedAt = 0;
  private settled = false;
  private trouble: string | null = null;
  private troubleLoggedAt = 0;

  constructor(
    private readonly blobs: BlobClient,
    private readonly clock: ClockCheck,
    private readonly log: Logger,
  ) {}

  /** The first check of the edge has settled: claims wait for it (it bounds itself to about 10 s). */
  get checked(): boolean {
    return this.settled;
  }

  /** Whether the next check is due: none running, and the last one long enough ago (sooner while something is wrong). */
  due(): boolean {
    const suspect = this.clock.off || this.blobs.tokenRefused || this.clock.skewMs === null;
    return !this.running && performance.now() - this.checkedAt >= (suspect ? EDGE_RECHECK_MS : EDGE_CHECK_MS);
  }

  /** Starts a check; the promise never rejects. */
  start(): Promise<void> {
    const check = this.check().finally(() => (this.running = null));
    this.running = check;
    return check;
  }

  /** The check at start-up, waited for at most EDGE_CHECK_AT_START_MS (it then finishes, or not, in the background). */
  async atStart(): Promise<void> {
    await within(this.start(), EDGE_CHECK_AT_START_MS);
  }

  private async check(): Promise<void> {
    const { blobs, log } = this;
    // Monotonic: the wall clock is what is being checked, and a step of it back must not put the next check off.
    this.checkedAt = performance.now();
    const sent = Date.now();
    try {
      const edgeNow = await blobs.edgeClock();
      this.clock.observe(sent, Date.now(), edgeNow);
      this.trouble = null;
    } catch (err) {
      // Said when it changes, else every 5 minutes: a mistyped token is checked every 10 s until it is fixed.
      const trouble = blobs.tokenRefused ? "the edge refuses this runner's RUNNER_TOKEN: not claiming" : "could not read the edge's clock";
      if (trouble !== this.trouble || performance.now() - this.troubleLoggedAt > 300_000) {
        this.trouble = trouble;
        this.troubleLoggedAt = performance.now();
        (blobs.tokenRefused ? log.error : log.warn)(trouble, { error: errorMessage(err) });
      }
    } finally {
      this.settled = true;
    }
  }
}
