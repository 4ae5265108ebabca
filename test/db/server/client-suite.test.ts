// Checks ported from the libSQL maintainers' client test suite (tursodatabase/libsql-client-ts,
// packages/libsql-client/src/__tests__/client.test.ts), which encodes how sqld answers: constraint errors carry the
// primary code, a write batch is one transaction even under concurrency, a failing step rolls the batch back and is
// reported by index, and a finished transaction refuses further statements.
import { createClient, type Client, LibsqlError } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";

const TOKEN = "client-suite-token-0123456789";
let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql({ authToken: TOKEN });
});
afterAll(() => server.close());

let n = 0;
/** A client on a database of its own (so the checks need no DROP TABLE IF EXISTS like the original suite). */
async function withClient(f: (c: Client) => Promise<void>): Promise<void> {
  const c = createClient({ url: server.dbUrl(`suite_${++n}`), authToken: TOKEN, intMode: "number" });
  try {
    await f(c);
  } finally {
    c.close();
  }
}

const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe("constraint error codes (sqld sends the primary code)", () => {
  it("reports a PRIMARY KEY violation as SQLITE_CONSTRAINT", () =>
    withClient(async (c) => {
      await c.execute("CREATE TABLE t_pk_test (id INTEGER PRIMARY KEY, name TEXT)");
      await c.execute("INSERT INTO t_pk_test VALUES (1, 'first')");
      const err = await failure(c.execute("INSERT INTO t_pk_test VALUES (1, 'duplicate')"));
      expect(err).toBeInstanceOf(LibsqlError);
      expect((err as LibsqlError).code).toBe("SQLITE_CONSTRAINT");
    }));

  it("reports a UNIQUE violation as SQLITE_CONSTRAINT", () =>
    withClient(async (c) => {
      await c.execute("CREATE TABLE t_unique_test (id INTEGER, name TEXT UNIQUE)");
      await c.execute("INSERT INTO t_unique_test VALUES (1, 'unique_name')");
      const err = await failure(c.execute("INSERT INTO t_unique_test VALUES (2, 'unique_name')"));
      expect((err as LibsqlError).code).toBe("SQLITE_CONSTRAINT");
      expect((err as LibsqlError).message).toMatch(/UNIQUE constraint failed/);
    }));
});

describe("batch()", () => {
  it("executes a write batch as one transaction, also with 100 batches at once", () =>
    withClient(async (c) => {
      await c.batch(["CREATE TABLE t1 (a)", "CREATE TABLE t2 (a)"], "write");
      const count = 100;
      await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const rss = await c.batch(
            [
              { sql: "INSERT INTO t1 VALUES (?)", args: [i] },
              { sql: "INSERT INTO t2 VALUES (?)", args: [i * 10] },
              "SELECT SUM(a) FROM t1",
              "SELECT SUM(a) FROM t2",
            ],
            "write",
          );
          expect(rss[3]!.rows[0]![0]).toBe((rss[2]!.rows[0]![0] as number) * 10);
        }),
      );
      expect((await c.execute("SELECT SUM(a) FROM t1")).rows[0]![0]).toBe((count * (count - 1)) / 2);
      expect((await c.execute("SELECT SUM(a) FROM t2")).rows[0]![0]).toBe(((count * (count - 1)) / 2) * 10);
    }));

  it("rolls the whole batch back when a statement fails", () =>
    withClient(async (c) => {
      await c.execute("CREATE TABLE t (a)");
      await c.execute("INSERT INTO t VALUES ('one')");
      const err = await failure(c.batch(["INSERT INTO t VALUES ('two')", "SELECT foobar", "INSERT INTO t VALUES ('three')"], "write"));
      expect(err).toBeInstanceOf(LibsqlError);
      expect((await c.execute("SELECT COUNT(*) FROM t")).rows[0]![0]).toBe(1);
    }));

  it.each([0, 1, 2])("reports the index of the failing statement (%i) in a read batch", (index) =>
    withClient(async (c) => {
      const stmts = ["SELECT 1", "SELECT 2", "SELECT 3"];
      stmts[index] = "SELECT invalid_column";
      const err = await failure(c.batch(stmts, "read"));
      expect(err).toMatchObject({ name: "LibsqlBatchError", statementIndex: index, code: "SQLITE_ERROR" });
    }),
  );

  it("reports the index of the failing statement in a write batch, and rolls it back", () =>
    withClient(async (c) => {
      await c.execute("CREATE TABLE t (a UNIQUE)");
      await c.execute("INSERT INTO t VALUES (1)");
      const err = await failure(
        c.batch(["INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (4)"], "write"),
      );
      expect(err).toMatchObject({ name: "LibsqlBatchError", statementIndex: 2, code: "SQLITE_CONSTRAINT" });
      expect((await c.execute("SELECT COUNT(*) FROM t")).rows[0]![0]).toBe(1);
    }));

  it("runs a batch of 1000 statements in order", () =>
    withClient(async (c) => {
      const rss = await c.batch(
        Array.from({ length: 1000 }, (_, i) => `SELECT ${i}`),
        "read",
      );
      expect(rss.map((rs) => rs.rows[0]![0])).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    }));
});

describe("transaction()", () => {
  it("reads several rows in a read transaction", () =>
    withClient(async (c) => {
      const txn = await c.transaction("read");
      const rs = await txn.execute("VALUES (1, 'one'), (2, 'two'), (3, 'three')");
      expect(rs.rows.map((r) => Array.from(r))).toEqual([
        [1, "one"],
        [2, "two"],
        [3, "three"],
      ]);
      txn.close();
    }));

  it.each([
    ["commit", 2],
    ["rollback", 0],
  ] as const)("ends with %s() and then refuses statements with TRANSACTION_CLOSED", (end, expected) =>
    withClient(async (c) => {
      await c.batch(["CREATE TABLE t (a)"], "write");
      const txn = await c.transaction("write");
      await txn.execute("INSERT INTO t VALUES ('one')");
      await txn.execute("INSERT INTO t VALUES ('two')");
      expect(txn.closed).toBe(false);
      await txn[end]();
      expect(txn.closed).toBe(true);
      expect((await c.execute("SELECT COUNT(*) FROM t")).rows[0]![0]).toBe(expected);
      await expect(txn.execute("SELECT 1")).rejects.toMatchObject({ code: "TRANSACTION_CLOSED" });
    }),
  );

  it("rolls back a transaction that is closed without commit", () =>
    withClient(async (c) => {
      await c.batch(["CREATE TABLE t (a)"], "write");
      const txn = await c.transaction("write");
      await txn.execute("INSERT INTO t VALUES ('one')");
      txn.close();
      expect((await c.execute("SELECT COUNT(*) FROM t")).rows[0]![0]).toBe(0);
    }));

  it("keeps the transaction open after an error, and commits what succeeded", () =>
    withClient(async (c) => {
      await c.batch(["CREATE TABLE t (a UNIQUE)"], "write");
      const txn = await c.transaction("write");
      await txn.execute("INSERT INTO t VALUES (1)");
      await expect(txn.execute("INSERT INTO t VALUES (1)")).rejects.toMatchObject({ code: "SQLITE_CONSTRAINT" });
      await txn.execute("INSERT INTO t VALUES (2)");
      await txn.commit();
      expect((await c.execute("SELECT a FROM t ORDER BY a")).rows.map((r) => r.a)).toEqual([1, 2]);
    }));
});
