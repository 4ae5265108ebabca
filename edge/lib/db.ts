import { createDb, type Db } from "../../db/client";
import type { Config } from "../env";

/**
 * A database client for one request (or one scheduled run). Never share it between requests: @libsql/client
 * queues calls beyond 20 in flight (promise-limit) and starts a queued call when *another* call finishes, i.e.
 * from another request's context; workerd then cancels the waiting request as hung (500, "code had hung").
 * Creating the client is cheap: no socket, no handshake.
 */
export function dbFor(config: Config): Db {
  return createDb(config.LIBSQL_URL, { authToken: config.LIBSQL_AUTH_TOKEN, timeoutMs: 8_000 });
}
