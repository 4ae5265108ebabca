/**
 * The one way tests and the bench wait for a condition of a live system: poll, race each check against
 * the deadline, and fail naming the step.
 */
const NO_ANSWER = Symbol("no answer");

/** How long a check started near the deadline still gets, and how long one must hang to be called unanswered. */
const CHECK_GRACE_MS = 5_000;

/**
 * Polls `fn` until it returns something truthy (returned) or the timeout passes (throws naming `what`). Each call
 * is raced against the deadline (but gets at least CHECK_GRACE_MS): a check that never answers (a request the edge
 * holds open) must fail this step by name, not hold the whole test until vitest's own timeout, which names nothing.
 * The error tells a slow condition (every check answered) from a hung check, and gives the last check's own error.
 */
export async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<typeof NO_ANSWER>((r) => (timer = setTimeout(() => r(NO_ANSWER), Math.max(deadline - started, CHECK_GRACE_MS))));
    const check = Promise.resolve()
      .then(fn)
      .then(
        (v) => ((lastError = undefined), v),
        (err: unknown) => ((lastError = err), null),
      );
    const v = await Promise.race([check, expired]).finally(() => clearTimeout(timer));
    if (v && v !== NO_ANSWER) return v;
    if (Date.now() >= deadline) {
      const hung = v === NO_ANSWER ? `; the last check had not answered after ${Date.now() - started} ms` : "";
      const err = lastError === undefined ? "" : `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${hung}${err}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
