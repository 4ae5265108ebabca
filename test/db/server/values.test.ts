import { createClient as createNodeClient, type Client, type Config } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestLibsql } from "../../helpers/libsql";

const server = useTestLibsql();

const clients: [string, (config: Config) => Client][] = [
  ["@libsql/client (Node)", createNodeClient],
  ["@libsql/client/web", createWebClient],
];

describe.each(clients)("values and arguments through %s", (label, createClient) => {
  let client: Client;
  beforeAll(() => {
    client = createClient({ url: server.dbUrl(`values_${label.includes("web") ? "web" : "node"}`), intMode: "bigint" });
  });
  afterAll(() => client.close());

  it("binds positional arguments, plain and numbered", async () => {
    const rs = await client.execute({ sql: "SELECT ? AS a, ? AS b, ?5 AS e", args: [1n, "two", null, null, 5n] });
    expect(rs.columns).toEqual(["a", "b", "e"]);
    expect(rs.rows[0]).toMatchObject({ a: 1n, b: "two", e: 5n });
  });

  it.each([
    ["bare names", { a: 1n, b: "x", c: null }],
    ["prefixed names", { ":a": 1n, "@b": "x", $c: null }],
  ])("binds :name, @name and $name placeholders given %s", async (_, args) => {
    const rs = await client.execute({ sql: "SELECT :a AS a, @b AS b, $c AS c, typeof($c) AS tc", args });
    expect({ ...rs.rows[0] }).toEqual({ a: 1n, b: "x", c: null, tc: "null" });
  });

  it("binds a named parameter used twice to one value", async () => {
    const rs = await client.execute({ sql: "SELECT :v + :v AS twice", args: { v: 21n } });
    expect(rs.rows[0]?.twice).toBe(42n);
  });

  it("round-trips null, 64-bit integers beyond 2^53, floats, text and blobs", async () => {
    await client.execute("CREATE TABLE vals (id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, n)");
    const big = 2n ** 53n + 1n;
    const cases: unknown[][] = [
      [1n, big, 3.141592653589793, "héllo 🎬 'quoted' \"dq\"", new Uint8Array([0, 1, 254, 255]), null],
      [2n, 2n ** 63n - 1n, 1e300, "", new Uint8Array([]), null],
      [3n, -(2n ** 63n), -0.5, "x".repeat(100_000), new Uint8Array(4096).map((_, i) => i % 256), null],
    ];
    for (const args of cases) {
      await client.execute({ sql: "INSERT INTO vals VALUES (?, ?, ?, ?, ?, ?)", args: args as never });
    }
    const rs = await client.execute("SELECT id, i, f, t, b, n, typeof(i) AS ti, typeof(f) AS tf FROM vals ORDER BY id");
    expect(rs.columnTypes).toEqual(["INTEGER", "INTEGER", "REAL", "TEXT", "BLOB", "", "", ""]);
    rs.rows.forEach((row, k) => {
      const [id, i, f, t, b, n] = cases[k]!;
      expect(row.id).toBe(id);
      expect(row.i).toBe(i);
      expect(row.f).toBe(f);
      expect(row.t).toBe(t);
      expect(new Uint8Array(row.b as ArrayBuffer)).toEqual(b);
      expect(row.n).toBe(n);
      expect([row.ti, row.tf]).toEqual(["integer", "real"]);
    });
  });

  it("keeps integers exact in string mode and refuses unsafe ones in number mode", async () => {
    const url = server.dbUrl("values_modes");
    const asString = createClient({ url, intMode: "string" });
    const asNumber = createClient({ url, intMode: "number" });
    try {
      const rs = await asString.execute({ sql: "SELECT ? AS v", args: [9007199254740993n] });
      expect(rs.rows[0]?.v).toBe("9007199254740993");
      // An integer sent back as a float would silently lose precision instead of raising.
      await expect(asNumber.execute("SELECT 9007199254740993 AS v")).rejects.toThrow(RangeError);
      expect((await asNumber.execute("SELECT 42 AS v")).rows[0]?.v).toBe(42);
    } finally {
      asString.close();
      asNumber.close();
    }
  });

  it("sends JS numbers as floats, booleans as integers and dates as milliseconds", async () => {
    const when = new Date("2026-01-02T03:04:05.678Z");
    const rs = await client.execute({
      sql: "SELECT typeof(?) AS t1, ? AS one, typeof(?) AS t2, ? AS yes, ? AS ms",
      args: [1, 1, true, true, when],
    });
    expect({ ...rs.rows[0] }).toEqual({ t1: "real", one: 1, t2: "integer", yes: 1n, ms: when.getTime() });
  });

  it("reports rowsAffected and lastInsertRowid for writes, and none for reads", async () => {
    await client.execute("CREATE TABLE ids (id INTEGER PRIMARY KEY, v TEXT)");
    const ins = await client.execute({ sql: "INSERT INTO ids (id, v) VALUES (?, 'a'), (?, 'b')", args: [10n, 2n ** 60n] });
    expect(ins.rowsAffected).toBe(2);
    expect(ins.lastInsertRowid).toBe(2n ** 60n);
    const upd = await client.execute("UPDATE ids SET v = 'c'");
    expect(upd.rowsAffected).toBe(2);
    const ddl = await client.execute("CREATE INDEX ids_v ON ids (v)");
    expect(ddl.rowsAffected).toBe(0);
    const sel = await client.execute("SELECT * FROM ids");
    expect(sel.rowsAffected).toBe(0);
    expect(sel.lastInsertRowid).toBeUndefined();
    const ret = await client.execute("INSERT INTO ids (v) VALUES ('r') RETURNING id, v");
    expect(ret.rowsAffected).toBe(1);
    expect({ ...ret.rows[0] }).toEqual({ id: 2n ** 60n + 1n, v: "r" });
  });

  it("refuses a statement string holding two statements instead of running only the first", async () => {
    await expect(client.execute("SELECT 1; SELECT 2")).rejects.toMatchObject({ code: "SQL_MANY_STATEMENTS" });
    expect((await client.execute("SELECT 'a;b' AS v; -- trailing comment")).rows[0]?.v).toBe("a;b");
  });

  it("runs a CREATE TRIGGER whose body holds statements, also under a comment, and refuses one followed by another statement", async () => {
    await client.execute("CREATE TABLE trig_src (v INTEGER)");
    await client.execute("CREATE TABLE trig_log (v INTEGER)");
    await client.execute(`-- why the trigger exists; with a ';' in the comment
      CREATE TRIGGER trig_copy AFTER INSERT ON trig_src BEGIN
        INSERT INTO trig_log (v) VALUES (NEW.v);
        INSERT INTO trig_log (v) VALUES (NEW.v * 10);
      END;`);
    await client.execute("INSERT INTO trig_src (v) VALUES (4)");
    expect((await client.execute("SELECT v FROM trig_log ORDER BY v")).rows.map((r) => r.v)).toEqual([4n, 40n]);
    await expect(
      client.execute("CREATE TRIGGER trig_two AFTER INSERT ON trig_src BEGIN SELECT 1; END; DROP TABLE trig_log"),
    ).rejects.toMatchObject({ code: "SQL_MANY_STATEMENTS" });
    expect((await client.execute("SELECT count(*) AS n FROM trig_log")).rows[0]?.n).toBe(2n);
  });
});
