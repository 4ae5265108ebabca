import { describe, expect, it } from "vitest";
import { Poller, type PollHost, type PollOutcome } from "../../../edge/ui/shared/poll";

/** A controllable clock and visibility: timers run only when the test advances them. */
class FakeHost implements PollHost {
  hidden = false;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private listeners = new Set<() => void>();
  private nextId = 1;
  now = 0;
  rnd = 0.5;
  setTimeout(fn: () => void, ms: number) {
    const id = this.nextId++;
    this.timers.push({ at: this.now + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown) {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  isHidden() {
    return this.hidden;
  }
  onVisibilityChange(fn: () => void) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  random() {
    return this.rnd;
  }
  setHidden(hidden: boolean) {
    this.hidden = hidden;
    for (const fn of this.listeners) fn();
  }
  pending() {
    return this.timers.length;
  }
  /** Runs the next timer and lets the tick's promise settle. */
  async fire(): Promise<number> {
    this.timers.sort((a, b) => a.at - b.at);
    const t = this.timers.shift();
    if (!t) throw new Error("no timer pending");
    const delay = t.at - this.now;
    this.now = t.at;
    t.fn();
    await new Promise((r) => setImmediate(r));
    return delay;
  }
}

function poller(host: FakeHost, outcomes: PollOutcome[], hiddenDelayMs?: () => number | null) {
  let calls = 0;
  const p = new Poller(
    {
      tick: async () => {
        calls++;
        return outcomes.shift() ?? "unchanged";
      },
      hiddenDelayMs,
    },
    host,
  );
  return { p, calls: () => calls };
}

describe("Poller", () => {
  it("starts at 2 s and backs off ×1.5 to a 10 s ceiling while nothing changes", async () => {
    const host = new FakeHost();
    const { p } = poller(host, []);
    p.start();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) delays.push(await host.fire());
    expect(delays).toEqual([2000, 3000, 4500, 6750, 10000, 10000, 10000]);
    p.stop();
  });

  it("drops back to 2 s as soon as something changes", async () => {
    const host = new FakeHost();
    const { p } = poller(host, ["unchanged", "unchanged", "changed"]);
    p.start();
    const delays = [await host.fire(), await host.fire(), await host.fire(), await host.fire()];
    expect(delays).toEqual([2000, 3000, 4500, 2000]);
    p.stop();
  });

  it("spreads requests with ±20 % jitter", async () => {
    const host = new FakeHost();
    host.rnd = 0;
    const { p } = poller(host, []);
    p.start(); // first delay drawn now, with random() = 0
    host.rnd = 1; // the next delay is drawn when the first tick finishes
    expect(await host.fire()).toBe(1600); // 2000 × 0.8
    expect(await host.fire()).toBe(3600); // 3000 × 1.2
    p.stop();
  });

  it("stops for good on a terminal status", async () => {
    const host = new FakeHost();
    const { p, calls } = poller(host, ["unchanged", "terminal"]);
    p.start();
    await host.fire();
    await host.fire();
    expect(calls()).toBe(2);
    expect(p.running).toBe(false);
    expect(host.pending()).toBe(0);
  });

  it("pauses while the tab is hidden and refreshes at once when it is visible again", async () => {
    const host = new FakeHost();
    const { p, calls } = poller(host, []);
    p.start();
    await host.fire();
    await host.fire();
    host.setHidden(true);
    expect(host.pending()).toBe(0);
    host.setHidden(false);
    await new Promise((r) => setImmediate(r));
    expect(calls()).toBe(3);
    expect(await host.fire()).toBe(3000); // back-off restarted from 2 s, then ×1.5 after the unchanged refresh
    p.stop();
  });

  it("keeps one slow background request going while hidden when the notification watcher asks for it", async () => {
    const host = new FakeHost();
    let notify = true;
    const { p } = poller(host, [], () => (notify ? 30_000 : null));
    p.start();
    host.setHidden(true);
    expect(await host.fire()).toBe(30_000);
    notify = false;
    await host.fire();
    expect(host.pending()).toBe(0);
    p.stop();
  });

  it("polls right away on kick and restarts the back-off", async () => {
    const host = new FakeHost();
    const { p, calls } = poller(host, []);
    p.start();
    await host.fire();
    await host.fire();
    p.kick();
    await new Promise((r) => setImmediate(r));
    expect(calls()).toBe(3);
    expect(await host.fire()).toBe(3000);
    p.stop();
  });
});
