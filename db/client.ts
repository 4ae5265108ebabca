import { createClient, type Client } from "@libsql/client/web";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import { drizzle } from "drizzle-orm/libsql/web";
import * as schema from "./schema";

export type Db = LibSQLDatabase<typeof schema> & { $client: Client };

export interface DbOptions {
  authToken?: string;
  /** Upper bound for one HTTP round trip, so an unreachable database fails fast instead of hanging a request. */
  timeoutMs?: number;
  /** Called once per HTTP round trip (metrics). */
  onRoundTrip?: () => void;
}

/** Opens a drizzle database over the libSQL HTTP protocol (local server, sqld or Turso). Works in Node and workerd. */
export function createDb(url: string, opts: DbOptions = {}): Db {
  const { timeoutMs = 10_000, onRoundTrip } = opts;
  const timedFetch = (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    onRoundTrip?.();
    const signal = AbortSignal.timeout(timeoutMs);
    if (input instanceof Request) return fetch(new Request(input, { signal }));
    return fetch(input, { ...init, signal });
  };
  const client = createClient({ url, authToken: opts.authToken || undefined, intMode: "number", fetch: timedFetch });
  return drizzle(client, { schema, casing: "snake_case" }) as Db;
}
