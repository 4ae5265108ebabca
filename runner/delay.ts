/**
 * The runner's one way to wait: resolves after `ms`, or rejects with the signal's reason when it aborts first.
 * The timer is unref'd: a pending delay never keeps the process alive on its own — unless `keepAlive` (a wait
 * that is all the process is doing, like start-up's retry of the database: unref'd, the process just ended, exit 0).
 */
export function delay(ms: number, signal?: AbortSignal, opts: { keepAlive?: boolean } = {}): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    if (!opts.keepAlive) timer.unref();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Waits for `p` at most `ms`; true when it settled in time. Never rejects. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  await Promise.race([p.then(() => (settled = true), () => (settled = true)), delay(ms)]);
  return settled;
}
