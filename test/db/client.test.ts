import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createDb, REPLAY_SAFE, replaySafe, type Db } from "../../db/client";
import { isDbUnavailable } from "../../db/errors";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";

// What a pooled connection to the database looks like when it breaks: a proxy in front of the libSQL server drops
// the client's connection either before forwarding a request ("before": the server never sees it) or after the
// server answered ("after": it ran, the reply is lost).
type Fault = "before" | "after";

let server: TestLibsqlServer;
let proxy: Server;
let faults: Fault[] = [];
let reachedServer: string[] = [];
let db: Db;

beforeAll(async () => {
  server = await startTestLibsql();
  const target = new URL(server.dbUrl("client_retry"));
  proxy = createServer((req, res) => {
    const fault = faults.shift();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (fault === "before") return void req.socket.destroy();
      const body = Buffer.concat(chunks);
      reachedServer.push(body.toString("utf8"));
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: `${target.pathname.replace(/\/$/, "")}${req.url}`, headers: req.headers },
        (upRes) => {
          const reply: Buffer[] = [];
          upRes.on("data", (c: Buffer) => reply.push(c));
          upRes.on("end", () => {
            if (fault === "after") return void req.socket.destroy();
            res.writeHead(upRes.statusCode ?? 502, upRes.headers).end(Buffer.concat(reply));
          });
        },
      );
      up.on("error", () => req.socket.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  db = createDb(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, { timeoutMs: 5_000 });
  await db.run(sql`CREATE TABLE counters (id TEXT PRIMARY KEY, n INTEGER NOT NULL, status TEXT NOT NULL)`);
});
afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  await server?.close();
});
beforeEach(async () => {
  faults = [];
  await db.run(sql`DELETE FROM counters`);
  await db.run(sql`INSERT INTO counters (id, n, status) VALUES ('a', 0, 'queued')`);
  reachedServer = [];
});

const counter = async () => (await db.all<{ n: number; status: string }>(sql`SELECT n, status FROM counters WHERE id = 'a'`))[0];

describe("a read whose database connection drops", () => {
  it("is sent once more and returns its rows when the connection dropped before the server saw it", async () => {
    faults = ["before"];
    expect(await counter()).toEqual({ n: 0, status: "queued" });
    expect(reachedServer).toHaveLength(1);
  });

  it("is sent once more and returns its rows when the server ran it and only the reply was lost", async () => {
    faults = ["after"];
    expect(await counter()).toEqual({ n: 0, status: "queued" });
    expect(reachedServer).toHaveLength(2);
  });

  it("is sent once more as a batch of reads (BEGIN … COMMIT around them)", async () => {
    faults = ["before"];
    const [a, b] = await db.batch([db.all(sql`SELECT n FROM counters`), db.all(sql`SELECT status FROM counters`)]);
    expect([a, b]).toEqual([[{ n: 0 }], [{ status: "queued" }]]);
  });

  it("fails with a connection error (db_unavailable) when the retry's connection drops too", async () => {
    faults = ["before", "before"];
    const err = await counter().then(() => null, (e: unknown) => e);
    expect(isDbUnavailable(err)).toBe(true);
    expect(faults).toEqual([]);
  });
});

describe("a write marked replay-safe whose connection drops", () => {
  it("is sent once more and leaves the same row as one run, whether the server saw the first attempt or not", async () => {
    for (const fault of ["before", "after"] as const) {
      faults = [fault];
      reachedServer = [];
      await db.run(sql`${REPLAY_SAFE}UPDATE counters SET status = ${`set-${fault}`} WHERE id = 'a'`);
      expect(reachedServer).toHaveLength(fault === "after" ? 2 : 1);
      expect(await counter()).toEqual({ n: 0, status: `set-${fault}` });
    }
  });
});

describe("what is never sent twice", () => {
  it("a compare-and-set whose reply was lost: the caller gets a connection error and the write ran exactly once", async () => {
    faults = ["after"];
    const err = await db
      .all(sql`UPDATE counters SET n = n + 1, status = 'running' WHERE id = 'a' AND status = 'queued' RETURNING n`)
      .then(() => null, (e: unknown) => e);
    expect(isDbUnavailable(err)).toBe(true);
    expect(reachedServer).toHaveLength(1);
    expect(await counter()).toEqual({ n: 1, status: "running" });
  });

  it("a write dropped before it reached the server (the client cannot tell that from a lost reply)", async () => {
    faults = ["before"];
    const err = await db.run(sql`UPDATE counters SET n = n + 1 WHERE id = 'a'`).then(() => null, (e: unknown) => e);
    expect(isDbUnavailable(err)).toBe(true);
    expect(await counter()).toEqual({ n: 0, status: "queued" });
  });

  it("a read inside an interactive transaction (its stream lives on the server between requests)", async () => {
    const tx = await db.$client.transaction("read");
    try {
      faults = ["before"];
      const err = await tx.execute("SELECT n FROM counters").then(() => null, (e: unknown) => e);
      expect(isDbUnavailable(err)).toBe(true);
      expect(faults).toEqual([]);
    } finally {
      tx.close();
    }
    expect(reachedServer).toHaveLength(0);
  });

  it("a statement the server answered with an SQL error (an answer, not a dropped connection)", async () => {
    await expect(db.all(sql`SELECT nope FROM counters`)).rejects.toThrow(/nope/);
    expect(reachedServer).toHaveLength(1);
  });
});

describe("replaySafe", () => {
  const pipeline = (requests: unknown[], baton: string | null = null) => JSON.stringify({ baton, requests });
  const exec = (text: string) => ({ type: "execute", stmt: { sql: text, args: [] } });

  it("accepts reads that open and close their own stream, with SQL stored in the same pipeline", () => {
    expect(replaySafe(pipeline([exec('select "id" from "jobs" where "status" = ?'), { type: "close" }]))).toBe(true);
    expect(replaySafe(pipeline([exec("WITH t AS (SELECT 1 AS x) SELECT x FROM t"), { type: "close" }]))).toBe(true);
    expect(
      replaySafe(
        pipeline([
          { type: "store_sql", sql_id: 1, sql: "SELECT updated_at FROM jobs" },
          { type: "batch", batch: { steps: [{ stmt: { sql: "BEGIN DEFERRED" } }, { stmt: { sql_id: 1 } }, { stmt: { sql: "COMMIT" } }] } },
          { type: "close_sql", sql_id: 1 },
          { type: "close" },
        ]),
      ),
    ).toBe(true);
  });

  it("refuses writes, CTEs feeding a write, several statements in one text, streams with a baton or left open", () => {
    expect(replaySafe(pipeline([exec("UPDATE jobs SET status = 'x' WHERE status = 'y' RETURNING id"), { type: "close" }]))).toBe(false);
    expect(replaySafe(pipeline([exec("WITH t AS (SELECT id FROM jobs) DELETE FROM jobs WHERE id IN t"), { type: "close" }]))).toBe(false);
    expect(replaySafe(pipeline([exec("SELECT 1; DELETE FROM jobs"), { type: "close" }]))).toBe(false);
    expect(replaySafe(pipeline([{ type: "sequence", sql: "SELECT 1" }, { type: "close" }]))).toBe(false);
    expect(replaySafe(pipeline([exec("SELECT 1"), { type: "close" }], "baton-1"))).toBe(false);
    expect(replaySafe(pipeline([exec("SELECT 1")]))).toBe(false);
    expect(replaySafe(pipeline([exec("BEGIN IMMEDIATE")]))).toBe(false);
    expect(replaySafe(pipeline([{ type: "batch", batch: { steps: [{ stmt: { sql_id: 9 } }] } }, { type: "close" }]))).toBe(false);
    expect(replaySafe("not json")).toBe(false);
  });
});
