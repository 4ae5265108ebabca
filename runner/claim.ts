/** What slot accounting needs from a variation in hand. */
export interface Slotted {
  readonly phase: string;
  /** Took a slot for a re-draw whose FFmpeg has not started yet. */
  readonly redrawSlot?: boolean;
  /** Waiting for a slot for a re-draw with this place in line (lower waited longer), else null. */
  readonly redrawPlace?: number | null;
}

const holdsEncodeSlot = (t: Slotted) => t.phase === "source" || t.phase === "prepare" || t.phase === "encode" || t.redrawSlot === true;
/** A re-draw's place in the line for a slot; Infinity when not waiting (behind everyone). */
const placeOf = (t: Slotted) => t.redrawPlace ?? Infinity;
const waitsForSlot = (t: Slotted) => placeOf(t) !== Infinity;

/**
 * How many variations to claim on the next round trip. CONCURRENCY bounds FFmpeg work: a variation that is
 * verifying or uploading its output no longer holds an encode slot, so the next encode starts right away
 * (pipelining); at most CONCURRENCY such finishing variations at a time. Claims pause after edge trouble.
 */
export class ClaimGate {
  private pausedUntil = 0;
  private backoffMs = 0;
  private localBackoffMs = 0;
  /** The last claim got everything it asked for, so more work is probably waiting. */
  queueHadMore = true;

  constructor(private readonly concurrency: number) {}

  free(tasks: Iterable<Slotted>, now: number, stopping: boolean): number {
    if (stopping || now < this.pausedUntil) return 0;
    let encoding = 0;
    let total = 0;
    for (const t of tasks) {
      total++;
      // A re-draw waiting for a slot is work in hand: new claims leave it its slot.
      if (holdsEncodeSlot(t) || waitsForSlot(t)) encoding++;
    }
    return Math.max(0, Math.min(this.concurrency - encoding, 2 * this.concurrency - total));
  }

  /**
   * Encode slots left for `asking`'s re-draw (which encodes again after its own slot went to the next claim): not
   * held by a variation in hand, not asked for by the claim in flight, not owed to a re-draw waiting longer.
   */
  encodeRoom(tasks: Iterable<Slotted>, claimsInFlight: number, asking?: Slotted): number {
    const place = asking ? placeOf(asking) : Infinity;
    let taken = claimsInFlight;
    for (const t of tasks) {
      if (t === asking) continue;
      if (holdsEncodeSlot(t) || placeOf(t) < place) taken++;
    }
    return this.concurrency - taken;
  }

  /** Records a claim's result: fewer than asked means the queue is (momentarily) empty. */
  claimed(asked: number, got: number): void {
    this.queueHadMore = got >= asked;
  }

  /** The edge failed transiently: pause claims, 1 s doubling to 30 s while it keeps failing. Returns the pause. */
  edgeTrouble(now: number): number {
    this.backoffMs = Math.min(30_000, Math.max(1000, this.backoffMs * 2));
    this.pausedUntil = now + this.backoffMs;
    return this.backoffMs;
  }

  edgeOk(): void {
    this.backoffMs = 0;
  }

  /**
   * The runner's own machine failed (disk full, permissions): pause claims with the same backoff, so the work
   * goes to runners that have room instead of this one burning every attempt in seconds. Returns the pause.
   */
  localTrouble(now: number): number {
    this.localBackoffMs = Math.min(60_000, Math.max(2000, this.localBackoffMs * 2));
    this.pausedUntil = Math.max(this.pausedUntil, now + this.localBackoffMs);
    return this.localBackoffMs;
  }

  /** A variation completed: whatever was wrong locally is fine again. */
  localOk(): void {
    this.localBackoffMs = 0;
  }
}

/** Counts per key, bounded in keys (oldest forgotten first): forgetting only ever grants a few more refunds. */
export class RefundBudget {
  private readonly used = new Map<string, number>();
  constructor(
    private readonly perKey: number,
    private readonly maxKeys = 1000,
  ) {}

  take(key: string): boolean {
    const n = this.used.get(key) ?? 0;
    this.used.delete(key);
    this.used.set(key, n + 1);
    while (this.used.size > this.maxKeys) this.used.delete(this.used.keys().next().value!);
    return n < this.perKey;
  }
}
