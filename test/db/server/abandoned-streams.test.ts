import { createClient, type Client } from "@libsql/client/web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";
import { until } from "../../helpers/until";

// Scaled-down version of production timings: the edge aborts a database round trip after 8 s and the server
// rolls back an idle transaction after 10 s. Here: client timeout 300 ms, TTL 800 ms.
const TTL_MS = 800;
const CLIENT_TIMEOUT_MS = 300;

let server: TestLibsqlServer;
const serverLog: string[] = [];
beforeAll(async () => {
  server = await startTestLibsql({ txTtlMs: TTL_MS, log: (m) => serverLog.push(m) });
});
afterAll(() => server.close());

let n = 0;
/** A client shaped like db/client.ts: every HTTP round trip is aborted after `timeoutMs`. */
function timedClient(url: string, timeoutMs: number): Client {
  return createClient({
    url,
    intMode: "number",
    fetch: (input: Request | string | URL, init?: RequestInit) => {
      const signal = AbortSignal.timeout(timeoutMs);
      return input instanceof Request ? fetch(new Request(input, { signal })) : fetch(input, { ...init, signal });
    },
  });
}

async function freshDb(): Promise<{ url: string; admin: Client }> {
  const url = server.dbUrl(`abandoned_${++n}`);
  const admin = timedClient(url, 10_000);
  await admin.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
  return { url, admin };
}

describe("requests whose HTTP client went away", () => {
  it("do not each hold the database for another TTL once an abandoned transaction is rolled back", async () => {
    const { url, admin } = await freshDb();
    const rollbacksBefore = serverLog.filter((l) => l.includes("rolled back")).length;
    // A worker isolate that vanished mid-transaction: the stream stays open until the TTL.
    const abandoned = await admin.transaction("write");
    await abandoned.execute("INSERT INTO t (name) VALUES ('abandoned')");
    const started = Date.now();

    // Four edge requests start interactive transactions meanwhile; each gives up after its timeout.
    const impatient = timedClient(url, CLIENT_TIMEOUT_MS);
    const outcomes = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const tx = await impatient.transaction("write");
        return tx.execute({ sql: "INSERT INTO t (name) VALUES (?)", args: [`late-${i}`] }).then(
          () => "ok",
          (e: unknown) => String((e as Error).message),
        );
      }),
    );
    expect(outcomes.every((o) => /abort|timeout/i.test(o))).toBe(true);

    // Reads are served at once (other streams have their own connection); the next write must be served right
    // after the one TTL (before the fix: 5 × TTL, one per queued BEGIN).
    const reader = timedClient(url, 10_000);
    expect((await reader.execute("SELECT name FROM t")).rows.map((r) => r.name)).toEqual([]);
    await reader.execute("INSERT INTO t (name) VALUES ('after')");
    const waitedMs = Date.now() - started;
    console.log(`abandoned transaction + 4 given-up BEGINs: database writable again after ${waitedMs} ms (TTL ${TTL_MS} ms)`);
    expect(waitedMs).toBeLessThan(2 * TTL_MS);
    // Exactly one transaction needed the TTL: the given-up ones never opened.
    expect(serverLog.filter((l) => l.includes("rolled back")).length - rollbacksBefore).toBe(1);
    expect((await reader.execute("SELECT name FROM t")).rows.map((r) => r.name)).toEqual(["after"]);
    for (const c of [admin, impatient, reader]) c.close();
  });

  it("never run a statement that waited for the connection after its client gave up", async () => {
    const { url, admin } = await freshDb();
    const holder = await admin.transaction("write");
    await holder.execute("INSERT INTO t (name) VALUES ('held')");
    // The client saw a timeout error, so the write must not happen behind its back later.
    const impatient = timedClient(url, CLIENT_TIMEOUT_MS);
    const goneBefore = server.activity().clientsGone;
    await expect(impatient.execute("INSERT INTO t (name) VALUES ('gave up')")).rejects.toThrow(/abort|timeout/i);
    // The server must have seen the closed connection before the commit (a commit racing the FIN by microseconds
    // cannot know): wait for exactly that, not for a fixed time.
    await until("the server to see the client go", async () => server.activity().clientsGone > goneBefore, 10_000, 5);
    await holder.commit();
    expect((await admin.execute("SELECT name FROM t ORDER BY id")).rows.map((r) => r.name)).toEqual(["held"]);
    admin.close();
    impatient.close();
  });

  it("still serve a patient client that waited behind a transaction", async () => {
    const { url, admin } = await freshDb();
    const holder = await admin.transaction("write");
    await holder.execute("INSERT INTO t (name) VALUES ('first')");
    const patient = timedClient(url, 10_000);
    const write = patient.execute("INSERT INTO t (name) VALUES ('second')");
    await new Promise((r) => setTimeout(r, CLIENT_TIMEOUT_MS));
    await holder.commit();
    await write;
    expect((await admin.execute("SELECT name FROM t ORDER BY id")).rows.map((r) => r.name)).toEqual(["first", "second"]);
    admin.close();
    patient.close();
  });
});

describe("idle client connections", () => {
  it("stay open well past Node's 5 s default, so a pooled connection is never closed under a client about to reuse it", { timeout: 20_000 }, async () => {
    const { Agent, request } = await import("node:http");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ reused: boolean; socket: import("node:net").Socket }>((resolve, reject) => {
        let socket: import("node:net").Socket;
        const req = request(`${server.url}/health`, { agent }, (res) => {
          res.resume();
          res.on("end", () => resolve({ reused: req.reusedSocket, socket }));
        });
        req.on("socket", (s) => (socket = s));
        req.on("error", reject);
        req.end();
      });
    const first = await get();
    let closedAt: number | null = null;
    const t0 = Date.now();
    first.socket.once("close", () => (closedAt = Date.now() - t0));
    await new Promise((r) => setTimeout(r, 6_500));
    expect(closedAt).toBeNull();
    const second = await get();
    expect(second.reused).toBe(true);
    agent.destroy();
  });
});
