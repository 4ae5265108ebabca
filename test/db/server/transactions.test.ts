import { createClient as createNodeClient, type Client, type Config, LibsqlError } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postPipeline, startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql({ txTtlMs: 500 });
});
afterAll(() => server.close());

const clients: [string, (config: Config) => Client][] = [
  ["node", createNodeClient],
  ["web", createWebClient],
];

describe.each(clients)("transactions through the %s client", (kind, createClient) => {
  let n = 0;
  /** A fresh database per test, so tests in this file cannot see each other's rows. */
  async function freshDb(setup = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)") {
    const client = createClient({ url: server.dbUrl(`tx_${kind}_${++n}`), intMode: "number" });
    await client.executeMultiple(setup);
    return client;
  }
  const names = async (c: Client) => (await c.execute("SELECT name FROM t ORDER BY id")).rows.map((r) => r.name);

  it("commits a write batch as a whole", async () => {
    const c = await freshDb();
    const results = await c.batch(
      ["INSERT INTO t (name) VALUES ('a')", { sql: "INSERT INTO t (name) VALUES (?)", args: ["b"] }, "SELECT count(*) AS n FROM t"],
      "write",
    );
    expect(results.map((r) => r.rowsAffected)).toEqual([1, 1, 0]);
    expect(results[2]?.rows[0]?.n).toBe(2);
    expect(await names(c)).toEqual(["a", "b"]);
    c.close();
  });

  it("rolls back the whole batch when one statement fails, and reports which one", async () => {
    const c = await freshDb();
    await c.execute("INSERT INTO t (name) VALUES ('existing')");
    const err = await c
      .batch(["INSERT INTO t (name) VALUES ('new1')", "INSERT INTO t (name) VALUES ('existing')", "INSERT INTO t (name) VALUES ('new2')"], "write")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibsqlError);
    expect(err).toMatchObject({ code: "SQLITE_CONSTRAINT", statementIndex: 1, message: expect.stringContaining("UNIQUE constraint failed") });
    expect(await names(c)).toEqual(["existing"]);
    // The connection is usable (no transaction left open) afterwards.
    await c.execute("INSERT INTO t (name) VALUES ('after')");
    expect(await names(c)).toEqual(["existing", "after"]);
    c.close();
  });

  it("commits an interactive write transaction", async () => {
    const c = await freshDb();
    const tx = await c.transaction("write");
    await tx.execute("INSERT INTO t (name) VALUES ('in-tx')");
    expect((await tx.execute("SELECT count(*) AS n FROM t")).rows[0]?.n).toBe(1);
    await tx.commit();
    expect(await names(c)).toEqual(["in-tx"]);
    c.close();
  });

  it("rolls back an interactive transaction", async () => {
    const c = await freshDb();
    const tx = await c.transaction("write");
    await tx.batch(["INSERT INTO t (name) VALUES ('x')", "INSERT INTO t (name) VALUES ('y')"]);
    await tx.rollback();
    expect(await names(c)).toEqual([]);
    c.close();
  });

  it("keeps an interactive transaction open after a failing statement", async () => {
    const c = await freshDb();
    const tx = await c.transaction("write");
    await tx.execute("INSERT INTO t (name) VALUES ('first')");
    await expect(tx.execute("INSERT INTO t (name) VALUES ('first')")).rejects.toMatchObject({ code: "SQLITE_CONSTRAINT" });
    await expect(tx.execute("SELECT * FROM no_such_table")).rejects.toMatchObject({ code: "SQLITE_ERROR" });
    await tx.execute("INSERT INTO t (name) VALUES ('second')");
    await tx.commit();
    expect(await names(c)).toEqual(["first", "second"]);
    c.close();
  });

  it("serves reads on other streams while a transaction is open, showing them only committed rows", async () => {
    const c = await freshDb();
    await c.execute("INSERT INTO t (name) VALUES ('committed')");
    const other = createClient({ url: server.dbUrl(`tx_${kind}_${n}`), intMode: "number" });
    const tx = await c.transaction("write");
    await tx.execute("INSERT INTO t (name) VALUES ('pending')");
    // Returns while the transaction is still open (it is committed only below).
    expect(await names(other)).toEqual(["committed"]);
    expect(await tx.execute("SELECT count(*) AS n FROM t").then((r) => r.rows[0]?.n)).toBe(2);
    await tx.commit();
    expect(await names(other)).toEqual(["committed", "pending"]);
    other.close();
    c.close();
  });

  it("runs a write from another stream only after the open transaction committed", async () => {
    const c = await freshDb();
    const other = createClient({ url: server.dbUrl(`tx_${kind}_${n}`), intMode: "number" });
    const tx = await c.transaction("write");
    await tx.execute("INSERT INTO t (name) VALUES ('first')");
    let written = false;
    const write = other.execute("INSERT INTO t (name) VALUES ('second')").then(() => (written = true));
    // The write cannot have run yet: the transaction still holds the write lock.
    expect(await tx.execute("SELECT name FROM t ORDER BY id").then((r) => r.rows.map((x) => x.name))).toEqual(["first"]);
    expect(written).toBe(false);
    await tx.commit();
    await write;
    expect(await names(other)).toEqual(["first", "second"]);
    other.close();
    c.close();
  });

  it("lands 20 concurrent read-modify-write transactions without losing an update", async () => {
    const c = await freshDb("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO counter VALUES (1, 0);");
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const tx = await c.transaction("write");
        try {
          const current = Number((await tx.execute("SELECT n FROM counter WHERE id = 1")).rows[0]?.n);
          await new Promise((r) => setTimeout(r, 1)); // give other transactions a chance to interleave
          await tx.execute({ sql: "UPDATE counter SET n = ? WHERE id = 1", args: [current + 1] });
          await tx.commit();
        } finally {
          tx.close();
        }
      }),
    );
    expect((await c.execute("SELECT n FROM counter")).rows[0]?.n).toBe(20);
    c.close();
  });

  it("rolls back an abandoned transaction after the idle TTL and keeps serving other clients", async () => {
    const c = await freshDb();
    const abandoned = await c.transaction("write");
    await abandoned.execute("INSERT INTO t (name) VALUES ('never committed')");
    const other = createClient({ url: server.dbUrl(`tx_${kind}_${n}`), intMode: "number" });
    const started = Date.now();
    expect(await names(other)).toEqual([]);
    // The write had to wait for the write lock until the 500 ms TTL rolled the transaction back.
    await other.execute("INSERT INTO t (name) VALUES ('other')");
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(await names(other)).toEqual(["other"]);
    // The abandoned stream's baton is gone: its client gets an error instead of writing outside a transaction.
    await expect(abandoned.execute("INSERT INTO t (name) VALUES ('late')")).rejects.toMatchObject({ code: "STREAM_EXPIRED" });
    expect(await names(other)).toEqual(["other"]);
    other.close();
    c.close();
  });

  it("surfaces constraint violations with the primary SQLite code, as sqld does, and the kind in the message", async () => {
    const c = await freshDb(`
      CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE child (id TEXT PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id), CHECK (length(id) < 5));
      INSERT INTO parent VALUES (1);
      INSERT INTO child VALUES ('c1', 1);`);
    const codeOf = (sql: string) =>
      c.execute(sql).then(
        () => "no error",
        (e: unknown) => (e instanceof LibsqlError ? `${e.code}: ${/(\w+ constraint failed)/.exec(e.message)?.[1] ?? ""}` : String(e)),
      );
    expect(await codeOf("INSERT INTO parent VALUES (1)")).toBe("SQLITE_CONSTRAINT: UNIQUE constraint failed"); // rowid alias
    expect(await codeOf("INSERT INTO child VALUES ('c1', 1)")).toBe("SQLITE_CONSTRAINT: UNIQUE constraint failed");
    expect(await codeOf("INSERT INTO child VALUES ('c2', 99)")).toBe("SQLITE_CONSTRAINT: KEY constraint failed");
    expect(await codeOf("INSERT INTO child VALUES ('c3', NULL)")).toBe("SQLITE_CONSTRAINT: NULL constraint failed");
    expect(await codeOf("INSERT INTO child VALUES ('toolong', 1)")).toBe("SQLITE_CONSTRAINT: CHECK constraint failed");
    await c.execute("CREATE UNIQUE INDEX parent_uq ON child (parent_id)");
    expect(await codeOf("INSERT INTO child VALUES ('c4', 1)")).toBe("SQLITE_CONSTRAINT: UNIQUE constraint failed");
    expect(await codeOf("SELEC 1")).toBe("SQLITE_ERROR: ");
    c.close();
  });

  it("runs a multi-statement script with executeMultiple, also inside a transaction", async () => {
    const c = await freshDb();
    await c.executeMultiple(`
      INSERT INTO t (name) VALUES ('m1');
      -- a comment; with a semicolon
      INSERT INTO t (name) VALUES ('m;2');`);
    expect(await names(c)).toEqual(["m1", "m;2"]);
    await expect(c.executeMultiple("INSERT INTO t (name) VALUES ('m3'); INSERT INTO nope VALUES (1);")).rejects.toMatchObject({
      code: "SQLITE_ERROR",
    });
    const tx = await c.transaction("write");
    await tx.executeMultiple("INSERT INTO t (name) VALUES ('m4'); INSERT INTO t (name) VALUES ('m5');");
    await tx.rollback();
    expect(await names(c)).toEqual(["m1", "m;2", "m3"]);
    c.close();
  });
});

describe("a deferred transaction whose snapshot another stream's commit made stale", () => {
  it("refuses its write with SQLITE_BUSY and leaves no connection behind that serves the old snapshot or refuses writes", async () => {
    const stale = await startTestLibsql({ busyTimeoutMs: 200, txTtlMs: 60_000 });
    const url = stale.dbUrl("stale_snapshot");
    const c = createNodeClient({ url, intMode: "number" });
    const other = createNodeClient({ url, intMode: "number" });
    try {
      await c.executeMultiple("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);");
      const tx = await c.transaction("deferred");
      await tx.execute("SELECT count(*) FROM t");
      await other.execute("INSERT INTO t VALUES (2)");
      await expect(tx.execute("INSERT INTO t VALUES (3)")).rejects.toMatchObject({ code: "SQLITE_BUSY" });
      await tx.rollback();
      // Every later request gets a connection from the pool: none may read as of before row 2, or refuse a write.
      for (let i = 0; i < 4; i++) {
        expect((await other.execute("SELECT group_concat(x) AS v FROM t")).rows[0]?.v).toMatch(/^1,2/);
        await other.execute({ sql: "INSERT INTO t VALUES (?)", args: [10 + i] });
      }
    } finally {
      c.close();
      other.close();
    }
    // Shutdown checkpoints the database: a connection still holding the failed statement made that throw.
    await expect(stale.close()).resolves.toBeUndefined();
  });
});

describe("a write that waits longer than the busy timeout", () => {
  let busy: TestLibsqlServer;
  beforeAll(async () => {
    busy = await startTestLibsql({ busyTimeoutMs: 200, txTtlMs: 60_000 });
  });
  afterAll(() => busy.close());

  it("fails with SQLITE_BUSY, as from sqld, and leaves both streams usable", async () => {
    const url = busy.dbUrl("busy_autocommit");
    const holder = createNodeClient({ url, intMode: "number" });
    const other = createNodeClient({ url, intMode: "number" });
    await holder.execute("CREATE TABLE t (name TEXT)");
    const tx = await holder.transaction("write");
    await tx.execute("INSERT INTO t VALUES ('held')");
    await expect(other.execute("INSERT INTO t VALUES ('refused')")).rejects.toMatchObject({ code: "SQLITE_BUSY" });
    await tx.commit();
    await other.execute("INSERT INTO t VALUES ('later')");
    expect((await other.execute("SELECT name FROM t ORDER BY rowid")).rows.map((r) => r.name)).toEqual(["held", "later"]);
    holder.close();
    other.close();
  });

  it("refuses the rest of a deferred transaction that could not get the lock, until the client rolls it back", async () => {
    const url = `${busy.dbUrl("busy_deferred")}v2/pipeline`;
    const exec = (sql: string) => ({ type: "execute", stmt: { sql } });
    await postPipeline(url, { requests: [exec("CREATE TABLE t (name TEXT)"), { type: "close" }] });
    const holder = await postPipeline(url, { requests: [exec("BEGIN IMMEDIATE"), exec("INSERT INTO t VALUES ('held')")] });
    const deferred = await postPipeline(url, { requests: [exec("BEGIN"), exec("INSERT INTO t VALUES ('refused')")] });
    expect(deferred.body.results[1]).toMatchObject({ type: "error", error: { code: "SQLITE_BUSY" } });
    await postPipeline(url, { baton: holder.body.baton, requests: [exec("COMMIT"), { type: "close" }] });
    // Running this in autocommit mode would commit half of what the client thinks is one transaction.
    const next = await postPipeline(url, { baton: deferred.body.baton, requests: [exec("INSERT INTO t VALUES ('half')"), { type: "get_autocommit" }] });
    expect(next.body.results[0]).toMatchObject({ type: "error", error: { code: "SQLITE_BUSY" } });
    expect(next.body.results[1].response.is_autocommit).toBe(false);
    const rolled = await postPipeline(url, {
      baton: next.body.baton,
      requests: [exec("ROLLBACK"), exec("INSERT INTO t VALUES ('after rollback')"), exec("SELECT name FROM t ORDER BY rowid"), { type: "close" }],
    });
    expect(rolled.body.results.map((r: { type: string }) => r.type)).toEqual(["ok", "ok", "ok", "ok"]);
    expect(rolled.body.results[2].response.result.rows).toEqual([[{ type: "text", value: "held" }], [{ type: "text", value: "after rollback" }]]);
  });
});
