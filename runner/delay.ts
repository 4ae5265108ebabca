/**
 * The runner's one way to wait: resolves after `ms`, or rejects with the signal's reason when it aborts first.
 * The timer is unref'd: a pending delay never keeps the process alive on its own.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
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
    timer.unref();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Waits for `p` at most `ms`; true when it settled in time. Never rejects. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  await Promise.race([p.then(() => (settled = true), () => (settled = true)), delay(ms)]);
  return settled;
}
