// The one shape of "stopped on purpose" in the runner: the error an aborted execFile gives (code ABORT_ERR). Callers
// tell it apart from failures, so every wait that a stop cuts short rejects with this same shape.

export const isAbortError = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === "ABORT_ERR";

export const abortError = (signal?: AbortSignal): Error =>
  Object.assign(new Error("The operation was aborted", { cause: signal?.reason }), { name: "AbortError", code: "ABORT_ERR" });

/** `p`, or an AbortError as soon as `signal` aborts (what `p` stands for goes on; only this wait ends). */
export function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
