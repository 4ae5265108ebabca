import { isDbBusy, isDbUnavailable } from "../db/errors";
import { delay } from "./delay";
import { errorMessage } from "./log";

/** A database call failed with something other than "unreachable" (a constraint, a bug): never a user's reason. */
export class DbCallError extends Error {}

/**
 * Retries a database call while the database is unreachable or busy (a finished upload is worth recording). Safe because
 * every settle is a compare-and-set that reads the row back: a retry after a lost reply finds its own outcome.
 * By default it rides out a database restart (~20 s: backoff 250 ms doubling to at most 2 s); `until` (a time)
 * keeps trying longer, e.g. while this attempt's lease may still be valid. Other errors become DbCallError.
 */
export async function retryDb<T>(fn: () => Promise<T>, opts: { attempts?: number; until?: number } = {}): Promise<T> {
  const attempts = opts.attempts ?? 12;
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      // A busy database (another writer held the lock past its timeout) applied nothing: retried like an outage.
      // As a DbCallError it made a finished, uploaded draw "lost" and the next claim paid an attempt for it.
      if (!isDbUnavailable(err) && !isDbBusy(err)) throw new DbCallError(errorMessage(err), { cause: err });
      if (i >= attempts - 1 && Date.now() >= (opts.until ?? 0)) throw err;
      await delay(Math.min(2000, 250 * 2 ** Math.min(i, 3)));
    }
  }
}
