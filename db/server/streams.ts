// Databases (WAL files with a connection per stream), Hrana streams with batons, and the pipeline runner.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "libsql";
import { refuseFileAccess } from "./guard";
import {
  type BatchCond,
  type Conn,
  type HranaStmt,
  ProtoError,
  describe,
  executeBatch,
  prepareStmt,
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

/** Connections kept open for reuse per database once their streams have ended. */
const IDLE_CONNECTIONS = 4;
/** How often a request refused with SQLITE_BUSY looks again when no stream of ours announced a free lock. */
const BUSY_POLL_MS = 100;

/**
 * One database file in WAL mode, with a connection per stream (as sqld has): a stream holding a transaction keeps
 * its connection, readers on other streams keep reading the last committed state, and a writer on another stream
 * waits for the write lock in `Engine.run` — asynchronously, so the rest of the server keeps going.
 */
class DbHandle {
  private idle: Conn[] = [];
  private open = new Set<Conn>();
  private lockWaiters = new Set<() => void>();

  constructor(
    private path: string,
    private durable: boolean,
  ) {}

  acquire(): Conn {
    const pooled = this.idle.pop();
    if (pooled) return pooled;
    const conn = new Database(this.path);
    // busy_timeout 0: libsql is synchronous, so SQLite's busy handler would put the whole event loop to sleep while
    // the lock holder — another stream of this very process — cannot make progress.
    conn.exec(
      `PRAGMA journal_mode=WAL; PRAGMA busy_timeout=0; PRAGMA foreign_keys=ON; PRAGMA synchronous=${this.durable ? "NORMAL" : "OFF"};`,
    );
    conn.defaultSafeIntegers(true);
    this.open.add(conn);
    return conn;
  }

  /** Takes back the connection of an ended stream (its transaction already rolled back). */
  release(conn: Conn): void {
    let reusable = !conn.inTransaction && this.idle.length < IDLE_CONNECTIONS;
    try {
      // Connection settings one stream changed must not leak into the next.
      if (reusable) conn.exec("PRAGMA foreign_keys=ON; PRAGMA busy_timeout=0;");
    } catch {
      reusable = false;
    }
    if (reusable) {
      this.idle.push(conn);
    } else {
      this.open.delete(conn);
      conn.close();
    }
    this.lockMayBeFree();
  }

  /** Resolves when a stream of this database may have released the write lock, after `ms`, or when `gone` aborts. */
  waitForLock(ms: number, gone?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.lockWaiters.delete(done);
        gone?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.lockWaiters.add(done);
      gone?.addEventListener("abort", done, { once: true });
    });
  }

  lockMayBeFree(): void {
    for (const wake of [...this.lockWaiters]) wake();
  }

  get waitingForLock(): number {
    return this.lockWaiters.size;
  }

  /** Closes a connection that must not be reused (a statement on it may still be active). */
  discard(conn: Conn): void {
    this.open.delete(conn);
    try {
      conn.close();
    } catch {
      // already unusable; nothing else holds it
    }
    this.lockMayBeFree();
  }

  close(): void {
    const conns = [...this.open];
    // libsql-js has no finalize(): close() is deferred until prepared statements are garbage-collected, so
    // checkpoint now to leave a self-contained .db file behind.
    // Best effort: a connection whose failed statement is not yet collected keeps a table locked, and the checkpoint
    // failing must not stop the other connections (and databases) from closing.
    for (const conn of conns) {
      try {
        conn.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        break;
      } catch {
        // try the next connection; the WAL is replayed at the next open anyway
      }
    }
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // already unusable
      }
    }
    this.open.clear();
    this.idle = [];
  }
}

class Stream {
  readonly sqls = new Map<number, string>();
  /** Taken on first use and kept for the stream's life (connection state such as PRAGMAs is per stream in sqld). */
  conn: Conn | null = null;
  /** Set when the stream's transaction had to be rolled back after SQLITE_BUSY: only ROLLBACK is accepted then. */
  poisoned = false;
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

const RUNS_SQL = new Set(["execute", "batch", "sequence", "describe"]);

export class Engine {
  private dbs = new Map<string, DbHandle>();
  private parked = new Map<string, Stream>();
  private closing = false;
  private dir: string;
  private durable: boolean;

  constructor(
    private opts: { dataDir?: string; txTtlMs: number; busyTimeoutMs: number; log: (msg: string) => void },
  ) {
    this.durable = opts.dataDir !== undefined;
    if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
    // Without a data directory the databases live in a private temporary directory (removed on close): separate
    // connections cannot share an in-memory database the way WAL files are shared.
    this.dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "libsql-server-"));
  }

  /** Requests of every database waiting for a write lock right now. */
  waitingForLock(): number {
    let n = 0;
    for (const db of this.dbs.values()) n += db.waitingForLock;
    return n;
  }

  private database(name: string): DbHandle {
    let db = this.dbs.get(name);
    if (!db) {
      db = new DbHandle(join(this.dir, `${name}.db`), this.durable);
      this.dbs.set(name, db);
    }
    return db;
  }

  /**
   * Runs one pipeline request against database `dbName` (already validated by the caller). `gone` aborts when the
   * HTTP client disconnected before the reply.
   */
  async pipeline(dbName: string, body: PipelineBody, gone?: AbortSignal) {
    const db = this.database(dbName);
    const stream = body.baton == null ? new Stream(db) : this.take(body.baton, db);
    let close = false;
    const results = [];
    for (const req of body.requests) {
      const wasInTx = stream.conn?.inTransaction ?? false;
      try {
        if (req.type === "close") close = true;
        // The client was told its request failed (timeout): nothing may run behind its back afterwards.
        if (gone?.aborted && RUNS_SQL.has(req.type)) {
          throw new ProtoError("the client closed the request before this statement ran", "CLIENT_GONE");
        }
        results.push({ type: "ok", response: { type: req.type, ...(await this.handle(stream, req, gone)) } });
      } catch (err) {
        results.push({ type: "error", error: toHranaError(err) });
      }
      if (wasInTx && !stream.conn?.inTransaction) db.lockMayBeFree();
    }
    // A client that is gone never receives the new baton, so nobody could finish its transaction: roll it back
    // now rather than after the TTL (what was committed stays committed).
    if (close || this.closing || gone?.aborted) {
      this.end(stream);
      return { baton: null, base_url: null, results };
    }
    return { baton: this.park(stream), base_url: null, results };
  }

  private conn(stream: Stream): Conn {
    stream.conn ??= stream.db.acquire();
    return stream.conn;
  }

  private async handle(stream: Stream, req: StreamRequest, gone?: AbortSignal): Promise<object> {
    if (stream.poisoned && RUNS_SQL.has(req.type)) {
      // The client believes its transaction is still open: running its next statements in autocommit mode would
      // commit half of it. sqld keeps such a transaction open; here it could not commit anyway (see run()).
      if (req.type === "execute" && /^\s*rollback\s*;?\s*$/i.test(resolveSql(req.stmt, stream.sqls))) {
        stream.poisoned = false;
        return { result: { cols: [], rows: [], affected_row_count: 0, last_insert_rowid: null, rows_read: 0, rows_written: 0, query_duration_ms: 0 } };
      }
      throw new ProtoError("database is locked: this stream's transaction was rolled back after SQLITE_BUSY; send ROLLBACK", "SQLITE_BUSY");
    }
    switch (req.type) {
      case "close":
        return {};
      case "execute": {
        const conn = this.conn(stream);
        return { result: await this.run(stream, gone, prepareStmt(conn, req.stmt, stream.sqls)) };
      }
      case "batch": {
        const conn = this.conn(stream);
        return { result: await executeBatch(conn, req.batch.steps, stream.sqls, (f) => this.run(stream, gone, f)) };
      }
      case "sequence": {
        const sql = resolveSql(req, stream.sqls);
        refuseFileAccess(sql);
        const conn = this.conn(stream);
        await this.run(stream, gone, () => conn.exec(sql));
        return {};
      }
      case "describe":
        return { result: describe(this.conn(stream), resolveSql(req, stream.sqls)) };
      case "get_autocommit":
        return { is_autocommit: !(stream.conn?.inTransaction || stream.poisoned) };
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

  /**
   * Runs `f` on the stream's connection; when SQLite refuses it with SQLITE_BUSY (another stream holds the write
   * lock), waits without blocking the server and tries again, for at most busyTimeoutMs — then the client gets
   * SQLITE_BUSY, as from sqld. Retrying is safe: while one of our streams holds the write lock, the first write of
   * `f` fails before anything was written (statements run synchronously, nobody takes the lock in between), and a
   * transaction `f` opened itself (a sequence "BEGIN; INSERT …") is rolled back before the retry.
   */
  private async run<T>(stream: Stream, gone: AbortSignal | undefined, f: () => T): Promise<T> {
    const conn = stream.conn!;
    const deadline = Date.now() + this.opts.busyTimeoutMs;
    const wasInTx = conn.inTransaction;
    for (;;) {
      try {
        return f();
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code !== "string" || !code.startsWith("SQLITE_BUSY")) throw err;
        // SQLITE_BUSY_SNAPSHOT (a deferred transaction's read snapshot went stale) and the other variants cannot be
        // waited out, and their failed statement keeps the old snapshot on the connection even after ROLLBACK: back
        // in the pool it served stale reads and refused every write until garbage collection.
        if (code !== "SQLITE_BUSY") {
          this.giveUp(stream, wasInTx);
          throw err;
        }
        const remaining = deadline - Date.now();
        if (remaining > 0 && !gone?.aborted) {
          if (!wasInTx && conn.inTransaction) conn.exec("ROLLBACK");
          await stream.db.waitForLock(Math.min(remaining, BUSY_POLL_MS), gone);
          if (!gone?.aborted) continue;
        }
        this.giveUp(stream, wasInTx);
        throw err;
      }
    }
  }

  /**
   * After a final SQLITE_BUSY the failed libsql-js statement stays active until garbage-collected, and with it
   * every COMMIT on that connection would fail ("SQL statements in progress"), so the stream moves to a fresh
   * connection. A transaction the client had open is lost with it: roll it back and refuse the rest of it.
   */
  private giveUp(stream: Stream, wasInTx: boolean): void {
    const conn = stream.conn!;
    if (conn.inTransaction) {
      try {
        conn.exec("ROLLBACK");
      } catch {
        // the connection is discarded anyway
      }
      if (wasInTx) stream.poisoned = true;
    }
    stream.conn = null;
    stream.db.discard(conn);
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
    // An abandoned stream holding a transaction would keep the write lock (and its connection) forever.
    stream.timer = setTimeout(() => {
      this.parked.delete(baton);
      if (stream.conn?.inTransaction) {
        this.opts.log(`libsql: rolled back a transaction idle for more than ${this.opts.txTtlMs} ms`);
      }
      this.end(stream);
    }, this.opts.txTtlMs);
    return baton;
  }

  private end(stream: Stream): void {
    clearTimeout(stream.timer);
    const conn = stream.conn;
    if (!conn) return;
    stream.conn = null;
    if (conn.inTransaction) {
      try {
        conn.exec("ROLLBACK");
      } catch (err) {
        this.opts.log(`libsql: rollback failed: ${toHranaError(err).message}`);
      }
    }
    stream.db.release(conn);
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
    for (const db of this.dbs.values()) db.close();
    this.dbs.clear();
    if (!this.durable) rmSync(this.dir, { recursive: true, force: true });
  }
}
