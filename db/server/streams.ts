// Databases (one synchronous connection each), Hrana streams with batons, and the pipeline runner.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "libsql";
import {
  type BatchCond,
  type Conn,
  type HranaStmt,
  ProtoError,
  describe,
  executeBatch,
  executeStmt,
  resolveSql,
  toHranaError,
} from "./hrana";

/** A request-level failure answered with an HTTP status (bad baton, malformed body), not a Hrana result. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * One connection per database. libsql is synchronous, so a pipeline runs without yielding; the only state that
 * outlives a request is an open transaction, whose stream then owns the connection until it ends.
 */
class DbHandle {
  owner: Stream | null = null;
  private waiters: { stream: Stream; resolve: () => void }[] = [];

  constructor(readonly conn: Conn) {}

  /**
   * Waits for the connection. `gone` aborts when the HTTP client disconnected: such a request leaves the queue
   * instead of running later for nobody — otherwise a queued `BEGIN` whose client timed out would open a
   * transaction no one ever finishes, holding the database for another full TTL (and each such waiter adds one).
   */
  acquire(stream: Stream, gone?: AbortSignal): Promise<void> {
    if (this.owner === null || this.owner === stream) {
      this.owner = stream;
      return Promise.resolve();
    }
    if (gone?.aborted) return Promise.reject(clientGone());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i < 0) return; // already handed the connection: the pipeline runs and then ends the stream
        this.waiters.splice(i, 1);
        reject(clientGone());
      };
      const waiter = {
        stream,
        resolve: () => {
          gone?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      gone?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Hands the connection to the next waiter, unless `stream` still has a transaction open. */
  release(stream: Stream): void {
    if (this.owner !== stream || this.conn.inTransaction) return;
    const next = this.waiters.shift();
    this.owner = next?.stream ?? null;
    next?.resolve();
  }
}

/** Status 499 (nginx's "client closed request"): nobody reads it, but it keeps the logs honest. */
const clientGone = () => new HttpError(499, "client closed the request while it waited for the database", "CLIENT_GONE");

class Stream {
  readonly sqls = new Map<number, string>();
  timer: NodeJS.Timeout | undefined;
  constructor(readonly db: DbHandle) {}
}

type StreamRequest =
  | { type: "close" | "get_autocommit" }
  | { type: "execute"; stmt: HranaStmt }
  | { type: "batch"; batch: { steps: { condition?: BatchCond | null; stmt: HranaStmt }[] } }
  | { type: "sequence" | "describe"; sql?: string | null; sql_id?: number | null }
  | { type: "store_sql"; sql_id: number; sql: string }
  | { type: "close_sql"; sql_id: number };

export interface PipelineBody {
  baton?: string | null;
  requests: StreamRequest[];
}

const USES_CONNECTION = new Set(["execute", "batch", "sequence", "describe", "get_autocommit"]);

export class Engine {
  private dbs = new Map<string, DbHandle>();
  private parked = new Map<string, Stream>();
  private closing = false;

  constructor(
    private opts: { dataDir?: string; txTtlMs: number; log: (msg: string) => void },
  ) {
    if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
  }

  private database(name: string): DbHandle {
    let db = this.dbs.get(name);
    if (!db) {
      const conn = new Database(this.opts.dataDir ? join(this.opts.dataDir, `${name}.db`) : ":memory:");
      conn.exec("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;");
      conn.defaultSafeIntegers(true);
      db = new DbHandle(conn);
      this.dbs.set(name, db);
    }
    return db;
  }

  /** Runs one pipeline request. `gone` aborts when the HTTP client disconnected before the reply. */
  async pipeline(dbName: string, body: PipelineBody, gone?: AbortSignal) {
    const db = this.database(dbName);
    const stream = body.baton == null ? new Stream(db) : this.take(body.baton, db);
    if (stream.db.owner === stream || body.requests.some((r) => USES_CONNECTION.has(r.type))) {
      try {
        await db.acquire(stream, gone);
      } catch (err) {
        this.end(stream);
        throw err;
      }
    }
    let close = false;
    const results = body.requests.map((req) => {
      try {
        if (req.type === "close") close = true;
        return { type: "ok", response: { type: req.type, ...this.handle(stream, req) } };
      } catch (err) {
        return { type: "error", error: toHranaError(err) };
      }
    });
    // A client that is gone never receives the new baton, so nobody could finish its transaction: roll it back
    // now rather than after the TTL (what was committed stays committed).
    if (close || this.closing || gone?.aborted) {
      this.end(stream);
      return { baton: null, base_url: null, results };
    }
    db.release(stream);
    return { baton: this.park(stream), base_url: null, results };
  }

  private handle(stream: Stream, req: StreamRequest): object {
    const conn = stream.db.conn;
    switch (req.type) {
      case "close":
        return {};
      case "execute":
        return { result: executeStmt(conn, req.stmt, stream.sqls) };
      case "batch":
        return { result: executeBatch(conn, req.batch.steps, stream.sqls) };
      case "sequence":
        conn.exec(resolveSql(req, stream.sqls));
        return {};
      case "describe":
        return { result: describe(conn, resolveSql(req, stream.sqls)) };
      case "get_autocommit":
        return { is_autocommit: !conn.inTransaction };
      case "store_sql":
        stream.sqls.set(req.sql_id, req.sql);
        return {};
      case "close_sql":
        stream.sqls.delete(req.sql_id);
        return {};
      default:
        throw new ProtoError(`unknown request type ${JSON.stringify((req as { type: unknown }).type)}`, "PROTO_ERROR");
    }
  }

  private take(baton: string, db: DbHandle): Stream {
    const stream = this.parked.get(baton);
    if (!stream || stream.db !== db) {
      throw new HttpError(400, `baton is unknown, or its stream expired (idle > ${this.opts.txTtlMs} ms)`, "STREAM_EXPIRED");
    }
    this.parked.delete(baton);
    clearTimeout(stream.timer);
    return stream;
  }

  /** A baton is single-use: each reply gets a new one, so a replayed or concurrent request is refused. */
  private park(stream: Stream): string {
    const baton = randomBytes(18).toString("base64url");
    this.parked.set(baton, stream);
    // An abandoned stream holding a transaction would block every other client of its database.
    stream.timer = setTimeout(() => {
      this.parked.delete(baton);
      if (stream.db.owner === stream && stream.db.conn.inTransaction) {
        this.opts.log(`libsql: rolled back a transaction idle for more than ${this.opts.txTtlMs} ms`);
      }
      this.end(stream);
    }, this.opts.txTtlMs);
    return baton;
  }

  private end(stream: Stream): void {
    clearTimeout(stream.timer);
    const { db } = stream;
    if (db.owner === stream && db.conn.inTransaction) {
      try {
        db.conn.exec("ROLLBACK");
      } catch (err) {
        this.opts.log(`libsql: rollback failed: ${toHranaError(err).message}`);
      }
    }
    db.release(stream);
  }

  /** Ends every idle stream (rolling back its transaction); streams of in-flight requests end when they reply. */
  shutdown(): void {
    this.closing = true;
    for (const [baton, stream] of this.parked) {
      this.parked.delete(baton);
      this.end(stream);
    }
  }

  closeDatabases(): void {
    for (const db of this.dbs.values()) {
      // libsql-js has no finalize(): close() is deferred until prepared statements are garbage-collected, so
      // checkpoint now to leave a self-contained .db file behind.
      db.conn.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      db.conn.close();
    }
    this.dbs.clear();
  }
}
