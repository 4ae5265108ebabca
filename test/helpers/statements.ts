import type { InStatement } from "@libsql/client";
import type { Db } from "../../db/client";

/**
 * Calls `onSend` with the statements of every batch and execute `db` sends, before they go (awaited: a test can run
 * something of its own in between). Returns the function that puts the client back.
 */
export function interceptStatements(db: Db, onSend: (stmts: InStatement[]) => unknown): () => void {
  const client = db.$client;
  const [batch, execute] = [client.batch.bind(client), client.execute.bind(client)];
  client.batch = (async (stmts: InStatement[], mode?: never) => (await onSend(stmts), batch(stmts, mode))) as typeof client.batch;
  client.execute = (async (stmt: InStatement) => (await onSend([stmt]), execute(stmt))) as typeof client.execute;
  return () => void Object.assign(client, { batch, execute });
}

/** The SQL text of a statement. */
export const sqlOf = (s: InStatement) => (typeof s === "string" ? s : s.sql);

/** Every statement `run` sends through `db`, as SQL text with its arguments. */
export async function statementsOf(db: Db, run: () => Promise<unknown>): Promise<{ sql: string; args: unknown[] }[]> {
  const seen: { sql: string; args: unknown[] }[] = [];
  const restore = interceptStatements(db, (stmts) => {
    for (const s of stmts) seen.push({ sql: sqlOf(s), args: typeof s === "string" ? [] : ((s.args ?? []) as unknown[]) });
  });
  try {
    await run();
  } finally {
    restore();
  }
  return seen;
}

/**
 * Tables a statement reads in full (SQLite's "SCAN <table>", with or without an index), planned on `db`. Plan a
 * write statement on a database of its own with the same schema: libsql leaves the EXPLAIN of an UPDATE … RETURNING
 * active on its connection, and every later COMMIT there fails with "SQL statements in progress".
 */
export async function fullScans(db: Db, stmt: { sql: string; args: unknown[] }): Promise<string[]> {
  return (await planOf(db, stmt)).filter((d) => /^SCAN (?!CONSTANT ROW)/.test(d));
}

/** The lines of a statement's query plan (SQLite's EXPLAIN QUERY PLAN `detail`), planned on `db` (see fullScans). */
export async function planOf(db: Db, stmt: { sql: string; args: unknown[] }): Promise<string[]> {
  const plan = await db.$client.execute({ sql: `EXPLAIN QUERY PLAN ${stmt.sql}`, args: stmt.args as never });
  return plan.rows.map((r) => String(r.detail));
}
