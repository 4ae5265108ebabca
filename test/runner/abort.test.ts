import { describe, expect, it } from "vitest";
import { isAbortError, untilAborted } from "../../runner/abort";

describe("waiting that a stop can cut short", () => {
  it("ends the wait at once with an error callers tell apart from a failure, while the awaited work goes on", async () => {
    const stop = new AbortController();
    let finish!: (v: string) => void;
    const work = new Promise<string>((r) => (finish = r));
    const waiting = untilAborted(work, stop.signal);
    stop.abort(new Error("variation cancelled"));
    const err = await waiting.catch((e: unknown) => e);
    expect(isAbortError(err)).toBe(true);
    expect((err as Error).cause).toEqual(new Error("variation cancelled"));
    finish("still made");
    expect(await work).toBe("still made");
  });

  it("gives the work's own result or failure when no stop comes, and refuses at once when the stop came first", async () => {
    const stop = new AbortController();
    expect(await untilAborted(Promise.resolve("made"), stop.signal)).toBe("made");
    const failure = await untilAborted(Promise.reject(new Error("ffmpeg exited 1")), stop.signal).catch((e: unknown) => e);
    expect(isAbortError(failure)).toBe(false);
    stop.abort();
    expect(isAbortError(await untilAborted(new Promise(() => {}), stop.signal).catch((e: unknown) => e))).toBe(true);
  });
});
