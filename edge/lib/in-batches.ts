/**
 * Runs `step(limit)` — one statement that handles at most `limit` rows and says how many it did — until one handles
 * fewer than `limit`, at most `most` times: a backlog is worked down a bounded amount per call (each statement holds
 * the database's write lock only that long) and the rest is left to the next. The rows handled.
 */
export async function inBatches(step: (limit: number) => Promise<number>, limit: number, most: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < most; i++) {
    const n = await step(limit);
    total += n;
    if (n < limit) break;
  }
  return total;
}
