import { createDb, type Db } from "../../db/client";
import type { Config } from "../env";

const cache = new Map<string, Db>();

/** One drizzle instance per isolate and URL: the web client holds no socket, so sharing it is safe. */
export function dbFor(config: Config): Db {
  const key = `${config.LIBSQL_URL}\n${config.LIBSQL_AUTH_TOKEN ?? ""}`;
  let db = cache.get(key);
  if (!db) {
    db = createDb(config.LIBSQL_URL, { authToken: config.LIBSQL_AUTH_TOKEN, timeoutMs: 8_000 });
    cache.set(key, db);
  }
  return db;
}
