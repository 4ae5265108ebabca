import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, LibsqlError } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postPipeline, startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";

const exec = (sql: string, args: unknown[] = []) => ({ type: "execute", stmt: { sql, args, want_rows: true } });
const int = (v: number | bigint) => ({ type: "integer", value: String(v) });

describe("Hrana over HTTP, at the wire level", () => {
  let server: TestLibsqlServer;
  let url: string;
  beforeAll(async () => {
    server = await startTestLibsql();
    url = `${server.url}/wire/v2/pipeline`;
  });
  afterAll(() => server.close());

  it("answers health checks and the Hrana 2 version probe without touching a database, and does not claim Hrana 3", async () => {
    for (const path of ["/health", "/", "/v2"]) {
      const res = await fetch(server.url + path);
      expect([path, res.status, await res.text()]).toEqual([path, 200, "ok"]);
    }
    // A client that sees /v3 advertised uses /v3/cursor, which is not served.
    expect((await fetch(`${server.url}/v3`)).status).toBe(404);
  });

  it("encodes every value type as the Hrana JSON spec says", async () => {
    const { status, body } = await postPipeline(url, {
      requests: [exec("SELECT 1 AS i, 9223372036854775807 AS big, 1.5 AS f, 'é' AS t, x'00ff' AS b, NULL AS n"), { type: "close" }],
    });
    expect(status).toBe(200);
    expect(body.baton).toBeNull();
    expect(body.results[0]).toMatchObject({
      type: "ok",
      response: {
        type: "execute",
        result: {
          cols: [{ name: "i" }, { name: "big" }, { name: "f" }, { name: "t" }, { name: "b" }, { name: "n" }],
          rows: [[int(1), int(9223372036854775807n), { type: "float", value: 1.5 }, { type: "text", value: "é" }, { type: "blob", base64: "AP8=" }, { type: "null" }]],
          affected_row_count: 0,
          last_insert_rowid: null,
        },
      },
    });
    expect(body.results[1]).toEqual({ type: "ok", response: { type: "close" } });
  });

  it("keeps executing the pipeline after a failed request", async () => {
    const { body } = await postPipeline(url, { requests: [exec("SELECT * FROM missing"), exec("SELECT 2 AS v"), { type: "close" }] });
    expect(body.results[0]).toEqual({ type: "error", error: { message: "no such table: missing", code: "SQLITE_ERROR" } });
    expect(body.results[1].response.result.rows).toEqual([[int(2)]]);
  });

  it("serves /v3/pipeline like /v2/pipeline, and the default database without a name", async () => {
    await postPipeline(`${server.url}/v3/pipeline`, { requests: [exec("CREATE TABLE marker (x)"), { type: "close" }] });
    const { body } = await postPipeline(`${server.url}/v2/pipeline`, {
      requests: [exec("SELECT name FROM sqlite_master WHERE name = 'marker'"), { type: "close" }],
    });
    expect(body.results[0].response.result.rows).toEqual([[{ type: "text", value: "marker" }]]);
  });

  it("keeps a stream open through single-use batons and ends it on close", async () => {
    const first = await postPipeline(url, { requests: [{ type: "store_sql", sql_id: 7, sql: "SELECT ?1 * 2 AS v" }, { type: "get_autocommit" }] });
    expect(first.body.results[1].response).toEqual({ type: "get_autocommit", is_autocommit: true });
    const baton = first.body.baton;
    expect(baton).toEqual(expect.any(String));
    const second = await postPipeline(url, {
      baton,
      requests: [{ type: "execute", stmt: { sql_id: 7, args: [int(21)] } }, exec("BEGIN"), { type: "get_autocommit" }, exec("ROLLBACK"), { type: "close_sql", sql_id: 7 }, { type: "execute", stmt: { sql_id: 7 } }],
    });
    expect(second.body.results.map((r: { type: string }) => r.type)).toEqual(["ok", "ok", "ok", "ok", "ok", "error"]);
    expect(second.body.results[0].response.result.rows).toEqual([[int(42)]]);
    expect(second.body.results[2].response.is_autocommit).toBe(false);
    expect(second.body.baton).not.toBe(baton);
    const replay = await postPipeline(url, { baton, requests: [exec("SELECT 1")] });
    expect(replay.status).toBe(400);
    expect(replay.body).toMatchObject({ code: "STREAM_EXPIRED" });
    const closed = await postPipeline(url, { baton: second.body.baton, requests: [{ type: "close" }] });
    expect(closed.body).toEqual({ baton: null, base_url: null, results: [{ type: "ok", response: { type: "close" } }] });
    expect((await postPipeline(url, { baton: second.body.baton, requests: [] })).status).toBe(400);
  });

  it("evaluates batch conditions and reports skipped steps as null", async () => {
    const step = (sql: string, condition?: unknown) => ({ condition, stmt: { sql } });
    const { body } = await postPipeline(url, {
      requests: [
        {
          type: "batch",
          batch: {
            steps: [
              step("SELECT 1"),
              step("SELECT * FROM missing"),
              step("SELECT 'ran: ok 0'", { type: "ok", step: 0 }),
              step("SELECT 'skipped: ok 1'", { type: "ok", step: 1 }),
              step("SELECT 'ran: error 1'", { type: "error", step: 1 }),
              step("SELECT 'skipped: not ok 0'", { type: "not", cond: { type: "ok", step: 0 } }),
              step("SELECT 'ran: and'", { type: "and", conds: [{ type: "ok", step: 0 }, { type: "error", step: 1 }] }),
              step("SELECT 'ran: or'", { type: "or", conds: [{ type: "ok", step: 1 }, { type: "ok", step: 0 }] }),
              step("SELECT 'ran: autocommit'", { type: "is_autocommit" }),
            ],
          },
        },
        { type: "close" },
      ],
    });
    const { step_results, step_errors } = body.results[0].response.result;
    expect(step_results.map((r: unknown) => r !== null)).toEqual([true, false, true, false, true, false, true, true, true]);
    expect(step_errors.map((e: unknown) => e !== null)).toEqual([false, true, false, false, false, false, false, false, false]);
    expect(step_errors[1]).toMatchObject({ code: "SQLITE_ERROR" });
  });

  it("runs sequence and describe requests", async () => {
    const { body } = await postPipeline(url, {
      requests: [
        { type: "sequence", sql: "CREATE TABLE seq (a INTEGER, b TEXT); INSERT INTO seq VALUES (1, 'x');" },
        { type: "describe", sql: "SELECT a, b FROM seq WHERE a = :a AND b = ? AND a = :a" },
        exec("SELECT count(*) FROM seq"),
        { type: "close" },
      ],
    });
    expect(body.results[0]).toEqual({ type: "ok", response: { type: "sequence" } });
    expect(body.results[1].response.result).toEqual({
      params: [{ name: ":a" }, { name: null }],
      cols: [{ name: "a", decltype: "INTEGER" }, { name: "b", decltype: "TEXT" }],
      is_explain: false,
      is_readonly: true,
    });
    expect(body.results[2].response.result.rows).toEqual([[int(1)]]);
  });

  it("answers malformed requests with HTTP 400 and JSON, and unknown paths with 404", async () => {
    const bad = await postPipeline(url, "{not json");
    expect(bad).toMatchObject({ status: 400, body: { code: "INVALID_JSON" } });
    expect(await postPipeline(url, { requests: "nope" })).toMatchObject({ status: 400, body: { code: "INVALID_PIPELINE" } });
    expect(await postPipeline(url, { baton: "made-up", requests: [] })).toMatchObject({ status: 400, body: { code: "STREAM_EXPIRED" } });
    expect((await postPipeline(`${server.url}/bad.name/v2/pipeline`, { requests: [] })).status).toBe(404);
    const unknown = await postPipeline(url, { requests: [{ type: "frobnicate" }, { type: "close" }] });
    expect(unknown.body.results[0]).toMatchObject({ type: "error", error: { code: "PROTO_ERROR" } });
  });

  it("refuses a body over 50 MB with 413", async () => {
    const res = await postPipeline(url, JSON.stringify({ requests: [exec("SELECT ?", [{ type: "text", value: "x".repeat(50 * 1024 * 1024) }])] }));
    expect(res.status).toBe(413);
  });
});

describe("authentication", () => {
  let server: TestLibsqlServer;
  beforeAll(async () => {
    server = await startTestLibsql({ authToken: "s3cret" });
  });
  afterAll(() => server.close());

  it("accepts the right bearer token from both client flavours", async () => {
    for (const create of [createClient, createWebClient]) {
      const client = create({ url: server.url, authToken: "s3cret" });
      expect((await client.execute("SELECT 1 AS one")).rows[0]?.one).toBe(1);
      client.close();
    }
  });

  it.each([
    ["a wrong", "nope"],
    ["a missing", undefined],
  ])("rejects %s token with 401, which the client raises as an error", async (_, authToken) => {
    const client = createClient({ url: server.url, authToken });
    const err = await client.execute("SELECT 1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibsqlError);
    expect(err).toMatchObject({ code: "UNAUTHORIZED" });
    client.close();
    const raw = await postPipeline(`${server.url}/v2/pipeline`, { requests: [] }, authToken ? { authorization: `Bearer ${authToken}` } : {});
    expect(raw.status).toBe(401);
  });

  it("serves the health check without a token", async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });
});

describe("storage", () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "libsql-server-test-"));
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  it("keeps file-backed data across a restart on the same data directory", async () => {
    const first = await startTestLibsql({ dataDir });
    const writer = createClient({ url: first.url });
    await writer.batch(["CREATE TABLE kept (v TEXT)", "INSERT INTO kept VALUES ('survives')"], "write");
    const named = createClient({ url: first.dbUrl("named") });
    await named.execute("CREATE TABLE other (v)");
    writer.close();
    named.close();
    await first.close();
    expect(existsSync(join(dataDir, "default.db"))).toBe(true);
    expect(existsSync(join(dataDir, "named.db"))).toBe(true);

    const second = await startTestLibsql({ dataDir });
    const reader = createClient({ url: second.url });
    expect((await reader.execute("SELECT v FROM kept")).rows.map((r) => r.v)).toEqual(["survives"]);
    expect((await reader.execute("PRAGMA journal_mode")).rows[0]?.[0]).toBe("wal");
    reader.close();
    await second.close();
  });

  it("isolates databases addressed by path, and turns foreign keys on in each", async () => {
    const server = await startTestLibsql();
    const a = createClient({ url: server.dbUrl("a") });
    const b = createWebClient({ url: server.dbUrl("b") });
    const dflt = createClient({ url: server.url });
    await a.batch(["CREATE TABLE t (v)", "INSERT INTO t VALUES ('in a')"]);
    await b.batch(["CREATE TABLE t (v)", "INSERT INTO t VALUES ('in b')"]);
    expect((await a.execute("SELECT v FROM t")).rows.map((r) => r.v)).toEqual(["in a"]);
    expect((await b.execute("SELECT v FROM t")).rows.map((r) => r.v)).toEqual(["in b"]);
    await expect(dflt.execute("SELECT v FROM t")).rejects.toThrow(/no such table/);
    expect((await b.execute("PRAGMA foreign_keys")).rows[0]?.[0]).toBe(1);
    for (const c of [a, b, dflt]) c.close();
    await server.close();
  });
});

describe("graceful shutdown", () => {
  it("rolls back an open transaction, finishes requests queued behind it, then closes", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "libsql-server-test-"));
    try {
      const server = await startTestLibsql({ dataDir, txTtlMs: 60_000 });
      const url = `${server.url}/v2/pipeline`;
      await postPipeline(url, { requests: [exec("CREATE TABLE t (v)"), { type: "close" }] });
      const open = await postPipeline(url, { requests: [exec("BEGIN IMMEDIATE"), exec("INSERT INTO t VALUES ('uncommitted')")] });
      expect(open.body.baton).toEqual(expect.any(String));
      const queued = postPipeline(url, { requests: [exec("INSERT INTO t VALUES ('queued')"), { type: "close" }] });
      // The queued request must be waiting on the server before the close (not merely sent).
      for (const deadline = Date.now() + 10_000; server.activity().waitingForLock < 1; ) {
        if (Date.now() > deadline) throw new Error("the queued request never reached the server");
        await new Promise((r) => setTimeout(r, 5));
      }
      const started = Date.now();
      await server.close();
      expect(Date.now() - started).toBeLessThan(5_000); // did not wait for the 60 s TTL
      expect((await queued).status).toBe(200);
      await expect(fetch(url, { method: "POST", body: "{}" })).rejects.toThrow();

      const again = await startTestLibsql({ dataDir });
      const { body } = await postPipeline(`${again.url}/v2/pipeline`, { requests: [exec("SELECT v FROM t"), { type: "close" }] });
      expect(body.results[0].response.result.rows).toEqual([[{ type: "text", value: "queued" }]]);
      await again.close();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("npm run db:server", () => {
  it("serves on the configured port and data directory with a generated token when none is set, and exits 0 on SIGTERM", { timeout: 30_000 }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "libsql-server-cli-"));
    // tsx directly rather than npm, so the signal reaches the server and not a wrapper.
    const child = spawn(join(process.cwd(), "node_modules/.bin/tsx"), ["db/server/main.ts"], {
      env: { ...process.env, LIBSQL_PORT: "0", LIBSQL_DATA_DIR: dataDir, LIBSQL_AUTH_TOKEN: "" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      let out = "";
      const { url, token } = await new Promise<{ url: string; token: string }>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const m = /libsql server listening on (http:\/\/\S+)/.exec(out);
          const t = /generated token.*LIBSQL_AUTH_TOKEN=(\S+)/.exec(out);
          if (m && t) resolve({ url: m[1]!, token: t[1]! });
        });
        child.once("exit", (code) => reject(new Error(`db:server exited early (${code}): ${out}`)));
      });
      expect(token.length).toBeGreaterThanOrEqual(32);
      const anonymous = createClient({ url });
      await expect(anonymous.execute("SELECT 1")).rejects.toMatchObject({ code: "UNAUTHORIZED" });
      anonymous.close();
      const client = createClient({ url, authToken: token });
      await client.execute("CREATE TABLE cli (v)");
      // The dev server has no named databases.
      const named = createClient({ url: `${url}/other/`, authToken: token });
      await expect(named.execute("SELECT 1")).rejects.toThrow(/unknown database/);
      named.close();
      client.close();
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(existsSync(join(dataDir, "default.db"))).toBe(true);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
