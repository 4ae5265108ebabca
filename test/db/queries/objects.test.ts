import type { InStatement } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { isObjectRecorded } from "../../../db/queries/is-object-recorded";
import { recordedObjectKeys } from "../../../db/queries/objects";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

/** Every statement `run` sends through `db`, as SQL text with its arguments. */
async function statementsOf(db: Db, run: () => Promise<unknown>): Promise<{ sql: string; args: unknown[] }[]> {
  const seen: { sql: string; args: unknown[] }[] = [];
  const record = (s: InStatement) => void seen.push(typeof s === "string" ? { sql: s, args: [] } : { sql: s.sql, args: (s.args ?? []) as unknown[] });
  const client = db.$client;
  const [batch, execute] = [client.batch.bind(client), client.execute.bind(client)];
  client.batch = (async (stmts: InStatement[], mode?: never) => (stmts.forEach(record), batch(stmts, mode))) as typeof client.batch;
  client.execute = (async (stmt: InStatement) => (record(stmt), execute(stmt))) as typeof client.execute;
  try {
    await run();
  } finally {
    Object.assign(client, { batch, execute });
  }
  return seen;
}

/** Tables a statement reads in full (SQLite's "SCAN <table>", with or without an index). */
async function fullScans(db: Db, stmt: { sql: string; args: unknown[] }): Promise<string[]> {
  const plan = await db.$client.execute({ sql: `EXPLAIN QUERY PLAN ${stmt.sql}`, args: stmt.args as never });
  return plan.rows.map((r) => String(r.detail)).filter((d) => /^SCAN (?!CONSTANT ROW)/.test(d));
}

describe("object key lookups", () => {
  it("read no table in full: the orphan rule's page of keys and a runner's check before a delete use indexes", async () => {
    const { db } = await freshDb(server, "object_lookups");
    const keys = ["outputs/j1/v1.a1.mp4", "thumbs/j1.jpg", "sources/j1/s1", "uploads/u1", "outputs/j1/v1.a1.jpg"];
    const statements = [
      ...(await statementsOf(db, () => recordedObjectKeys(db, keys, 0))),
      ...(await statementsOf(db, async () => {
        for (const k of keys) await isObjectRecorded(db, k);
      })),
    ];
    expect(statements.length).toBeGreaterThanOrEqual(keys.length + 1);
    const scans = new Map<string, string[]>();
    for (const s of statements) {
      const found = await fullScans(db, s);
      if (found.length) scans.set(s.sql, found);
    }
    expect(Object.fromEntries(scans)).toEqual({});
  });
});
