import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLibsqlServer, type LibsqlServer } from "../../../db/server/server";
import { postPipeline } from "../../helpers/libsql";

// The dev server as `npm run db:server` runs it: a token, a data directory, no named databases.
const TOKEN = "lockdown-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };
const exec = (sql: string) => ({ type: "execute", stmt: { sql, want_rows: true } });

let server: LibsqlServer;
let dataDir: string;
let pipelineUrl: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "libsql-lockdown-"));
  server = await startLibsqlServer({ port: 0, dataDir, authToken: TOKEN });
  pipelineUrl = `${server.url}/v2/pipeline`;
});
afterAll(async () => {
  await server.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** Runs SQL through the official client with the right token; returns the rows or the error code. */
async function query(sql: string): Promise<unknown> {
  const client = createClient({ url: server.url, authToken: TOKEN });
  try {
    return (await client.execute(sql)).rows.map((r) => Array.from(r));
  } catch (err) {
    return (err as { code?: string }).code;
  } finally {
    client.close();
  }
}

const tableExists = async (name: string) =>
  ((await query(`SELECT count(*) FROM sqlite_master WHERE name = '${name}'`)) as number[][])[0]![0] === 1;

/** A raw HTTP request with full control over the Host header (fetch does not allow setting it). */
function rawPost(path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${path}`, { method: "POST", headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("requests a web page could send", () => {
  it("refuses a cross-site text/plain POST with 403 and runs none of its SQL", async () => {
    const body = JSON.stringify({ requests: [exec("CREATE TABLE pwned_origin (x)"), { type: "close" }] });
    const res = await fetch(pipelineUrl, {
      method: "POST",
      headers: { "content-type": "text/plain", origin: "https://evil.example", ...auth },
      body,
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: "ORIGIN_REFUSED", message: expect.stringContaining("evil.example") });
    expect(await tableExists("pwned_origin")).toBe(false);
  });

  it("refuses any request that carries an Origin header, even a JSON one with the right token", async () => {
    const res = await postPipeline(pipelineUrl, { requests: [exec("CREATE TABLE pwned_json (x)")] }, { ...auth, origin: server.url });
    expect(res).toMatchObject({ status: 403, body: { code: "ORIGIN_REFUSED" } });
    expect((await fetch(`${server.url}/health`, { headers: { origin: "https://evil.example" } })).status).toBe(403);
    expect(await tableExists("pwned_json")).toBe(false);
  });

  it("refuses a POST whose content-type is not application/json with 415 and runs nothing", async () => {
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const body = JSON.stringify({ requests: [exec("CREATE TABLE pwned_type (x)"), { type: "close" }] });
      const res = await fetch(pipelineUrl, { method: "POST", headers: { "content-type": type, ...auth }, body });
      expect([type, res.status]).toEqual([type, 415]);
      expect(await res.json()).toMatchObject({ code: "UNSUPPORTED_MEDIA_TYPE" });
    }
    expect(await tableExists("pwned_type")).toBe(false);
  });

  it("refuses a Host other than a loopback name (DNS rebinding) and accepts localhost and 127.0.0.1 on any port", async () => {
    const body = JSON.stringify({ requests: [exec("SELECT 1"), { type: "close" }] });
    const headers = { "content-type": "application/json", ...auth };
    for (const host of ["evil.example", `evil.example:${server.port}`, "127.0.0.1.evil.example", "localhost.evil.example:80"]) {
      const res = await rawPost("/v2/pipeline", { ...headers, host }, body);
      expect([host, res.status]).toEqual([host, 403]);
      expect(JSON.parse(res.body)).toMatchObject({ code: "HOST_REFUSED" });
    }
    for (const host of ["localhost", `localhost:${server.port}`, "127.0.0.1:1", "LOCALHOST:9", "[::1]:8080"]) {
      expect([host, (await rawPost("/v2/pipeline", { ...headers, host }, body)).status]).toEqual([host, 200]);
    }
  });
});

describe("authentication", () => {
  it.each([
    ["no", {}],
    ["a wrong", { authorization: "Bearer lockdown-token-0123456788" }],
    ["a shorter", { authorization: "Bearer x" }],
    ["a longer", { authorization: `Bearer ${TOKEN}${"x".repeat(500)}` }],
    ["a non-bearer", { authorization: `Basic ${TOKEN}` }],
  ])("answers %s token with 401 and runs nothing", async (_, headers) => {
    const res = await postPipeline(pipelineUrl, { requests: [exec("CREATE TABLE pwned_token (x)")] }, headers);
    expect(res).toMatchObject({ status: 401, body: { code: "UNAUTHORIZED" } });
    expect(await tableExists("pwned_token")).toBe(false);
  });

  it("will not start without a token unless a test asks for it by name", async () => {
    await expect(startLibsqlServer({ port: 0 })).rejects.toThrow(/authToken is required/);
    await expect(startLibsqlServer({ port: 0, authToken: "" })).rejects.toThrow(/authToken is required/);
  });
});

describe("files outside the data directory", () => {
  const outside = () => join(tmpdir(), `libsql-attach-${process.pid}-${Math.random().toString(36).slice(2)}.db`);

  it.each([
    ["ATTACH", (p: string) => `ATTACH DATABASE '${p}' AS evil`],
    ["lower-case attach without DATABASE", (p: string) => `attach '${p}' as evil`],
    ["ATTACH after a comment", (p: string) => `/* hello */ -- there\n ATTACH '${p}' AS evil`],
    ["ATTACH of a URI filename", (p: string) => `ATTACH 'file:${p}?mode=rwc' AS evil`],
    ["VACUUM INTO", (p: string) => `VACUUM INTO '${p}'`],
    ["VACUUM main INTO", (p: string) => `VACUUM main INTO '${p}'`],
  ])("refuses %s with a Hrana error result, keeps serving the pipeline, and creates no file", async (_, sqlFor) => {
    const path = outside();
    const res = await postPipeline(pipelineUrl, { requests: [exec(sqlFor(path)), exec("SELECT 7 AS still"), { type: "close" }] }, auth);
    expect(res.status).toBe(200);
    expect(res.body.results[0]).toEqual({ type: "error", error: { code: "SQLITE_AUTH", message: expect.stringMatching(/not authorized/) } });
    expect(res.body.results[1].response.result.rows).toEqual([[{ type: "integer", value: "7" }]]);
    expect(existsSync(path)).toBe(false);
  });

  it("refuses ATTACH inside a batch step and a sequence too, and leaves the database list alone", async () => {
    const path = outside();
    const res = await postPipeline(
      pipelineUrl,
      {
        requests: [
          { type: "batch", batch: { steps: [{ stmt: { sql: `ATTACH '${path}' AS evil` } }] } },
          { type: "sequence", sql: `SELECT 1; ATTACH '${path}' AS evil;` },
          { type: "describe", sql: `ATTACH '${path}' AS evil` },
          exec("SELECT name FROM pragma_database_list ORDER BY seq"),
          { type: "close" },
        ],
      },
      auth,
    );
    expect(res.body.results[0].response.result.step_errors[0]).toMatchObject({ code: "SQLITE_AUTH" });
    expect(res.body.results[1]).toMatchObject({ type: "error", error: { code: "SQLITE_AUTH" } });
    expect(res.body.results[2]).toMatchObject({ type: "error", error: { code: "SQLITE_AUTH" } });
    expect(res.body.results[3].response.result.rows).toEqual([[{ type: "text", value: "main" }]]);
    expect(existsSync(path)).toBe(false);
  });

  it("refuses functions and PRAGMAs that touch files, but not strings that merely mention them", async () => {
    const written = outside();
    expect(await query("SELECT load_extension('/tmp/x.so')")).toBe("SQLITE_AUTH");
    expect(await query(`SELECT "load_extension"('/tmp/x.so')`)).toBe("SQLITE_AUTH");
    // libsql ships SQLite's fileio extension: these would read and write any file the server can.
    expect(await query("SELECT readfile('/etc/hostname')")).toBe("SQLITE_AUTH");
    expect(await query(`SELECT writefile('${written}', 'x')`)).toBe("SQLITE_AUTH");
    expect(await query(`SELECT [writefile]('${written}', 'x')`)).toBe("SQLITE_AUTH");
    expect(await query("SELECT name FROM fsdir('/etc')")).toBe("SQLITE_AUTH");
    // sha3_query runs the SQL text it is given, which the lexical check never sees.
    expect(await query(`SELECT sha3_query('ATTACH ''${written}'' AS evil')`)).toBe("SQLITE_AUTH");
    expect(existsSync(written)).toBe(false);
    expect(await query("PRAGMA temp_store_directory = '/tmp'")).toBe("SQLITE_AUTH");
    expect(await query("DETACH DATABASE temp")).toBe("SQLITE_AUTH");
    expect(await query("SELECT 'attach database ''x'' as y' AS s, 'load_extension(1)' AS t")).toEqual([
      ["attach database 'x' as y", "load_extension(1)"],
    ]);
    expect(await query("VACUUM")).toEqual([]);
  });
});

describe("database names", () => {
  it("serves only the default database when named databases are off, and creates no other file", async () => {
    const before = readdirSync(dataDir).sort();
    // ("..", "%2e%2e" never get here: URL parsing folds them into the default database's own path.)
    for (const name of ["other", "default2", "a.b", "a%2Fb"]) {
      const res = await postPipeline(`${server.url}/${name}/v2/pipeline`, { requests: [exec("CREATE TABLE x (v)")] }, auth);
      expect([name, res.status]).toEqual([name, 404]);
    }
    const res = await postPipeline(`${server.url}/other/v2/pipeline`, { requests: [] }, auth);
    expect(res.body).toMatchObject({ code: "NAMESPACE_DOESNT_EXIST", message: expect.stringContaining("only the default database") });
    expect(readdirSync(dataDir).sort()).toEqual(before);
  });

  it("serves names matching the pattern when named databases are on, and refuses the rest", async () => {
    const named = await startLibsqlServer({ port: 0, authToken: TOKEN, namedDatabases: true });
    try {
      const ok = await postPipeline(`${named.url}/per_file-1/v2/pipeline`, { requests: [exec("SELECT 1"), { type: "close" }] }, auth);
      expect(ok.status).toBe(200);
      for (const name of ["a.b", "x".repeat(129), "a%2Fb", "%C3%A9"]) {
        expect((await postPipeline(`${named.url}/${name}/v2/pipeline`, { requests: [] }, auth)).status).toBe(404);
      }
    } finally {
      await named.close();
    }
  });
});

describe("protocol versions", () => {
  it("does not advertise Hrana 3 (GET /v3 is 404), since /v3/cursor is not served", async () => {
    expect((await fetch(`${server.url}/v3`)).status).toBe(404);
    expect((await fetch(`${server.url}/v3`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${server.url}/v2`)).status).toBe(200);
    const cursor = await postPipeline(`${server.url}/v3/cursor`, { batch: { steps: [] } }, auth);
    expect(cursor.status).toBe(404);
  });
});
