// Hrana (JSON) protocol on top of one synchronous libsql connection: value encoding, statements, batches.
import type Database from "libsql";
import { refuseFileAccess } from "./guard";

export type Conn = Database.Database;

export type HranaValue =
  | { type: "null" }
  | { type: "integer"; value: string }
  | { type: "float"; value: number }
  | { type: "text"; value: string }
  | { type: "blob"; base64: string };

export interface HranaStmt {
  sql?: string;
  sql_id?: number;
  args?: HranaValue[];
  named_args?: { name: string; value: HranaValue }[];
  want_rows?: boolean;
}

export type BatchCond =
  | { type: "ok" | "error"; step: number }
  | { type: "not"; cond: BatchCond }
  | { type: "and" | "or"; conds: BatchCond[] }
  | { type: "is_autocommit" };

export interface HranaError {
  message: string;
  code: string;
}

/** An error that is reported to the client as a Hrana error result (not an HTTP error). */
export class ProtoError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export function toHranaError(err: unknown): HranaError {
  if (err instanceof ProtoError) return { message: err.message, code: err.code };
  const e = err as { message?: unknown; code?: unknown };
  // libsql-js reports an empty statement as the "error" SQLITE_OK.
  if (e?.code === "SQLITE_OK") return { message: "SQL string contains no statement", code: "SQL_NO_STATEMENT" };
  // SqliteError.code is the extended name (SQLITE_CONSTRAINT_UNIQUE…); sqld sends the primary one
  // (SQLITE_CONSTRAINT), and @libsql/client exposes it unchanged as LibsqlError.code. Anything else is a malformed
  // request that slipped past decoding.
  const code = typeof e?.code === "string" && e.code.startsWith("SQLITE_") ? primaryCode(e.code) : "PROTO_ERROR";
  return { message: typeof e?.message === "string" ? e.message : String(err), code };
}

const PRIMARY_CODES = new Set(
  ("ERROR INTERNAL PERM ABORT BUSY LOCKED NOMEM READONLY INTERRUPT IOERR CORRUPT NOTFOUND FULL CANTOPEN PROTOCOL " +
    "EMPTY SCHEMA TOOBIG CONSTRAINT MISMATCH MISUSE NOLFS AUTH FORMAT RANGE NOTADB NOTICE WARNING").split(" "),
);

/** SQLITE_CONSTRAINT_PRIMARYKEY → SQLITE_CONSTRAINT, SQLITE_BUSY_SNAPSHOT → SQLITE_BUSY; primary codes unchanged. */
export function primaryCode(code: string): string {
  const parts = code.split("_");
  for (let i = parts.length; i > 1; i--) {
    if (PRIMARY_CODES.has(parts.slice(1, i).join("_"))) return parts.slice(0, i).join("_");
  }
  return code;
}

const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;

function decodeValue(v: HranaValue | undefined): unknown {
  switch (v?.type) {
    case "null":
      return null;
    case "integer": {
      const n = BigInt(v.value);
      if (n < MIN_I64 || n > MAX_I64) throw new ProtoError(`integer out of range: ${v.value}`, "ARGS_INVALID");
      return n;
    }
    case "float":
      return Number(v.value);
    case "text":
      return String(v.value);
    case "blob":
      return Buffer.from(v.base64 ?? "", "base64");
    default:
      throw new ProtoError(`invalid value: ${JSON.stringify(v)}`, "ARGS_INVALID");
  }
}

function encodeValue(v: unknown): HranaValue {
  if (v === null || v === undefined) return { type: "null" };
  // The connection reads with safe integers, so every INTEGER arrives as bigint and every number is a REAL.
  if (typeof v === "bigint") return { type: "integer", value: v.toString() };
  if (typeof v === "number") return { type: "float", value: v };
  if (typeof v === "string") return { type: "text", value: v };
  if (v instanceof Uint8Array) return { type: "blob", base64: Buffer.from(v).toString("base64") };
  throw new ProtoError(`unsupported column value of type ${typeof v}`, "INTERNAL");
}

/** Binds positional and named arguments the way libsql-js expects: bare names, 1-based positions. */
function bindArgs(stmt: HranaStmt): unknown[] | Record<string, unknown> {
  const args = (stmt.args ?? []).map(decodeValue);
  if (!stmt.named_args?.length) return args;
  const bound: Record<string, unknown> = {};
  args.forEach((v, i) => (bound[i + 1] = v));
  // Clients may send ":name", "@name", "$name" or "name"; libsql-js silently binds NULL to prefixed keys.
  for (const { name, value } of stmt.named_args) bound[name.replace(/^[:@$]/, "")] = decodeValue(value);
  return bound;
}

export type StmtResult = ReturnType<ReturnType<typeof prepareStmt>>;

/** Executes one statement; `sqls` resolves `sql_id` references from the stream's store_sql cache. */
export function executeStmt(conn: Conn, stmt: HranaStmt, sqls: Map<number, string>): StmtResult {
  return prepareStmt(conn, stmt, sqls)();
}

/**
 * Prepares one statement and returns a function that executes it; call it again to retry after SQLITE_BUSY. A
 * libsql-js statement that failed with SQLITE_BUSY stays active (it is reset only when run again, or when garbage
 * collected) and makes every later COMMIT on its connection fail, so a retry must reuse the same statement.
 */
export function prepareStmt(conn: Conn, stmt: HranaStmt, sqls: Map<number, string>) {
  const sql = resolveSql(stmt, sqls);
  refuseFileAccess(sql);
  // libsql-js would silently run only the first statement; sqld refuses, so do the same (triggers contain ';').
  // Comments are stripped first: a migration may explain its trigger in `--` lines above the CREATE TRIGGER.
  const bare = stripLiterals(sql);
  const oneTrigger = /^\s*create\s+(temp\s+|temporary\s+)?trigger\b[\s\S]*\bend\s*;?\s*$/i.test(bare);
  if (/;\s*\S/.test(bare) && !oneTrigger) {
    throw new ProtoError("SQL string contains more than one statement", "SQL_MANY_STATEMENTS");
  }
  const prepared = conn.prepare(sql);
  const args = bindArgs(stmt);
  return () => {
    const started = performance.now();
    const before = changeCounters(conn);
    let rows: unknown[][] = [];
    let cols: { name: string; decltype: string | null }[] = [];
    if (prepared.reader) {
      rows = prepared.raw(true).safeIntegers(true).all(args) as unknown[][];
      cols = prepared.columns().map((c) => ({ name: c.name, decltype: c.type }));
    } else {
      prepared.run(args);
    }
    const after = changeCounters(conn);
    // changes() keeps the previous DML count across DDL and SELECT, so only trust it if total_changes() moved.
    const wrote = after.total !== before.total;
    const affected = wrote ? Number(after.changes) : 0;
    return {
      cols,
      rows: stmt.want_rows === false ? [] : rows.map((r) => r.map(encodeValue)),
      affected_row_count: affected,
      last_insert_rowid: wrote ? after.rowid.toString() : null,
      rows_read: rows.length,
      rows_written: affected,
      query_duration_ms: performance.now() - started,
    };
  };
}

const counterStmts = new WeakMap<Conn, Database.Statement>();

function changeCounters(conn: Conn): { total: bigint; changes: bigint; rowid: bigint } {
  let stmt = counterStmts.get(conn);
  if (!stmt) {
    stmt = conn.prepare("SELECT total_changes(), changes(), last_insert_rowid()").raw(true).safeIntegers(true);
    counterStmts.set(conn, stmt);
  }
  const row = stmt.all()[0] as bigint[];
  return { total: row[0]!, changes: row[1]!, rowid: row[2]! };
}

export function resolveSql(req: { sql?: string | null; sql_id?: number | null }, sqls: Map<number, string>): string {
  if (typeof req.sql === "string") return req.sql;
  if (typeof req.sql_id === "number") {
    const sql = sqls.get(req.sql_id);
    if (sql === undefined) throw new ProtoError(`sql_id ${req.sql_id} is not stored on this stream`, "SQL_NOT_FOUND");
    return sql;
  }
  throw new ProtoError("statement has neither sql nor sql_id", "SQL_MISSING");
}

/**
 * Runs a batch. `run` executes one step's statement; the engine passes one that waits (asynchronously) and retries
 * a step refused with SQLITE_BUSY while another stream holds the write lock.
 */
export async function executeBatch(
  conn: Conn,
  steps: { condition?: BatchCond | null; stmt: HranaStmt }[],
  sqls: Map<number, string>,
  run: <T>(f: () => T) => Promise<T> = async (f) => f(),
) {
  const step_results: (StmtResult | null)[] = [];
  const step_errors: (HranaError | null)[] = [];
  const holds = (c: BatchCond): boolean => {
    switch (c.type) {
      case "ok":
        return step_results[c.step] != null;
      case "error":
        return step_errors[c.step] != null;
      case "not":
        return !holds(c.cond);
      case "and":
        return c.conds.every(holds);
      case "or":
        return c.conds.some(holds);
      case "is_autocommit":
        return !conn.inTransaction;
      default:
        throw new ProtoError(`unknown batch condition ${JSON.stringify(c)}`, "BATCH_COND_INVALID");
    }
  };
  for (const step of steps) {
    let result = null;
    let error = null;
    try {
      if (!step.condition || holds(step.condition)) result = await run(prepareStmt(conn, step.stmt, sqls));
    } catch (err) {
      error = toHranaError(err);
    }
    step_results.push(result);
    step_errors.push(error);
  }
  return { step_results, step_errors };
}

/** Describes a statement. libsql-js exposes no parameter list or readonly flag, so those are approximated. */
export function describe(conn: Conn, sql: string) {
  refuseFileAccess(sql);
  const prepared = conn.prepare(sql);
  // SQLite numbers parameters by first appearance; a repeated name or ?N is one parameter, a bare ? has no name.
  const names: (string | null)[] = [];
  for (const [token] of stripLiterals(sql).matchAll(/\?\d*|[:@$][A-Za-z_][A-Za-z0-9_]*/g)) {
    if (token === "?") names.push(null);
    else if (!names.includes(token)) names.push(token);
  }
  const params = names.map((name) => ({ name }));
  return {
    params,
    cols: prepared.reader ? prepared.columns().map((c) => ({ name: c.name, decltype: c.type })) : [],
    is_explain: /^\s*explain\b/i.test(sql),
    is_readonly: /^\s*(select|values|explain)\b/i.test(sql),
  };
}

function stripLiterals(sql: string): string {
  return sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|\/\*[\s\S]*?\*\//g, " ");
}
