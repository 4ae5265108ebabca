import { createClient, type Client } from "@libsql/client/web";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/libsql/web";
import * as schema from "./schema";

export type Db = LibSQLDatabase<typeof schema> & { $client: Client };

export interface DbOptions {
  authToken?: string;
  /** Upper bound for one HTTP round trip (including its one retry), so an unreachable database fails fast. */
  timeoutMs?: number;
  /** Called once per HTTP round trip, retries included (metrics). */
  onRoundTrip?: () => void;
}

/**
 * Opens a drizzle database over the libSQL HTTP protocol (local server, sqld or Turso). Works in Node and workerd.
 * A read whose connection drops is sent once more (see `replaySafe`); nothing else is retried here.
 */
export function createDb(url: string, opts: DbOptions = {}): Db {
  const { timeoutMs = 10_000, onRoundTrip } = opts;
  const timedFetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const body = await req.text();
    // One deadline for both attempts: a retry never stretches a round trip past timeoutMs.
    const signal = AbortSignal.timeout(timeoutMs);
    const send = () => {
      onRoundTrip?.();
      return fetch(req.url, { method: req.method, headers: req.headers, body, signal });
    };
    try {
      return await send();
    } catch (err) {
      if (!isConnectionFailure(err) || !replaySafe(body)) throw err;
      return send();
    }
  };
  const client = createClient({ url, authToken: opts.authToken || undefined, intMode: "number", fetch: timedFetch });
  return drizzle(client, { schema, casing: "snake_case" }) as Db;
}

/**
 * The request never got an HTTP response: the connection was refused, reset or closed under it (workerd:
 * "Network connection lost."; Node: "fetch failed" / "other side closed"). Both runtimes pool keep-alive connections
 * to the database and can hand a request one the peer has just dropped. Our own timeout is not one of these: the
 * time is spent. An HTTP error status (a SQL error, 5xx) is an answer and never reaches here.
 */
function isConnectionFailure(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return name !== "TimeoutError" && name !== "AbortError";
}

/**
 * Whether a Hrana pipeline may be sent a second time after a connection failure.
 *
 * A connection failure does not say whether the server received the request: it may come before the request was
 * written (a pooled connection the server had closed) or after the server executed it and only the reply was lost.
 * Neither runtime tells the two apart, so a request is replayed only when running it twice is the same as once:
 * - it opens its own stream (no baton): a request inside a stream (an interactive transaction) would be replayed
 *   against server state the first attempt may already have moved;
 * - it closes that stream itself (last request `close`), so the first attempt, if it ran, left nothing open;
 * - every statement is a read (SELECT / WITH … SELECT / VALUES), or a write its query marked {@link REPLAY_SAFE}
 *   (running it twice leaves the same rows as once: an upsert to given values, a SET to given values), alone or
 *   in a batch whose other steps are only BEGIN/COMMIT/ROLLBACK (a batch of reads in BEGIN IMMEDIATE takes a lock
 *   it gives back).
 * Writes are never replayed here, compare-and-sets included: if the first attempt committed, the replay of
 * `UPDATE … WHERE status = … RETURNING` matches no row and the caller would read "lost the race" for a change it
 * made; a claim would take other rows; an upsert counter would count twice. A compare-and-set's caller recovers by
 * reading the row back (the query layer, which knows what the write meant); to the edge, an unreplayed write is a
 * 503 db_unavailable the client may retry.
 */
export function replaySafe(bodyText: string): boolean {
  let body: { baton?: unknown; requests?: unknown };
  try {
    body = JSON.parse(bodyText);
  } catch {
    return false;
  }
  if (body.baton != null || !Array.isArray(body.requests) || body.requests.length === 0) return false;
  const requests = body.requests as HranaRequest[];
  if (requests[requests.length - 1]!.type !== "close") return false;
  // A batch may refer to SQL stored earlier in the same pipeline (@libsql/client's SqlCache).
  const stored = new Map<number, string>();
  for (const r of requests) if (r.type === "store_sql" && typeof r.sql === "string") stored.set(r.sql_id!, r.sql);
  const isRead = (stmt: HranaStmt | undefined, allowTxControl: boolean): boolean => {
    const sql = typeof stmt?.sql === "string" ? stmt.sql : stmt?.sql_id !== undefined ? stored.get(stmt.sql_id) : undefined;
    if (sql === undefined) return false;
    return isReadOnlySql(sql) || sql.startsWith(REPLAY_SAFE_MARK) || (allowTxControl && TX_CONTROL.test(sql));
  };
  return requests.every((r) => {
    switch (r.type) {
      case "close":
      case "store_sql":
      case "close_sql":
      case "get_autocommit":
        return true;
      case "execute":
        return isRead(r.stmt, false);
      case "batch":
        return Array.isArray(r.batch?.steps) && r.batch.steps.every((step) => isRead(step.stmt, true));
      default:
        // "sequence" (several statements in one text), "describe" of unknown SQL, anything newer: not judged, not replayed.
        return false;
    }
  });
}

const REPLAY_SAFE_MARK = "/* replay-safe */";
/**
 * Prefix for a write whose second run changes nothing the first did not (see `replaySafe`): after a connection
 * failure it is sent once more, like a read, instead of surfacing as 503 db_unavailable. Only for statements that
 * set given values; never for counters, claims or compare-and-sets whose caller reads "no row" as "lost".
 */
export const REPLAY_SAFE = sql.raw(`${REPLAY_SAFE_MARK} `);

interface HranaStmt {
  sql?: string;
  sql_id?: number;
}
interface HranaRequest {
  type: string;
  stmt?: HranaStmt;
  batch?: { steps?: { stmt?: HranaStmt }[] };
  sql?: string;
  sql_id?: number;
}

// What @libsql/client wraps a batch in (BEGIN DEFERRED / IMMEDIATE / TRANSACTION READONLY … COMMIT, ROLLBACK).
const TX_CONTROL = /^\s*(BEGIN(\s+(DEFERRED|IMMEDIATE|TRANSACTION(\s+READONLY)?))?|COMMIT|END|ROLLBACK)\s*;?\s*$/i;
const READ_START = /^\s*(SELECT|WITH|VALUES)\b/i;
// Conservative: any of these words anywhere (a CTE feeding an UPDATE, a `replace()` call) makes it "not a read".
const WRITE_WORD = /\b(INSERT|UPDATE|DELETE|REPLACE|UPSERT|CREATE|DROP|ALTER|ATTACH|DETACH|VACUUM|REINDEX|ANALYZE|PRAGMA)\b/i;

function isReadOnlySql(sql: string): boolean {
  const text = sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, " ");
  return READ_START.test(text) && !WRITE_WORD.test(text) && !text.replace(/;\s*$/, "").includes(";");
}
