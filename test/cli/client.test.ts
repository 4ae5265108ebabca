import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, RATE_LIMITED_TRIES, waitingOutRateLimit } from "../../cli/client";
import { storedTokenFor, writeConfig } from "../../cli/config";

/** A stand-in edge that accepts only the token in `valid`, and records what each request carried. */
let server: Server;
let url: string;
let dir: string;
let valid = "new-token";
const seen: { auth: string | undefined; body: string }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-cli-client-"));
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString("utf8")));
    req.on("end", () => {
      seen.push({ auth: req.headers.authorization, body });
      const ok = req.headers.authorization === `Bearer ${valid}`;
      res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
      res.end(ok ? JSON.stringify({ jobs: [], job: { id: "j1" } }) : '{"error":{"code":"invalid_token","message":"Invalid token"}}');
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

/** What this process read at its start. */
const was = { url: "", token: "old-token", email: "me@test.example" };

describe("a CLI command whose token a newer login replaced", () => {
  it("goes on with the token the config holds now: the refused request is sent again once, its JSON body intact", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "a") };
    // This process read "old-token"; another process's login has since stored "new-token" (and revoked the old one).
    await writeConfig(env, { url, token: "new-token", email: "me@test.example" });
    valid = "new-token";
    seen.length = 0;
    const api = apiClient(url, "old-token", {}, () => storedTokenFor(env, url, was));
    const posted = await api.POST("/api/jobs/{id}/cancel", { params: { path: { id: "j1" } }, body: { reason: "stop" } as never });
    expect(posted.response.status).toBe(200);
    expect(seen).toEqual([
      { auth: "Bearer old-token", body: '{"reason":"stop"}' },
      { auth: "Bearer new-token", body: '{"reason":"stop"}' },
    ]);
    // Later requests of the same command use the new token from the start.
    expect((await api.GET("/api/jobs")).response.status).toBe(200);
    expect(seen.at(-1)!.auth).toBe("Bearer new-token");
    expect(seen).toHaveLength(3);
  });

  it("sends a large upload's part again too: its bytes are in memory, and a part refused with 401 must not end the upload", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "d") };
    await writeConfig(env, { url, token: "new-token", email: was.email });
    valid = "new-token";
    seen.length = 0;
    const api = apiClient(url, "old-token", {}, () => storedTokenFor(env, url, was));
    const bytes = Buffer.from("part-bytes");
    const res = await api.PUT("/api/uploads/{id}/parts/{n}", {
      params: { path: { id: "u1", n: 1 } },
      body: bytes as unknown as string,
      bodySerializer: (b) => b as unknown as string,
      headers: { "content-type": "application/octet-stream", "content-length": String(bytes.length) },
    });
    expect(res.response.status).toBe(200);
    expect(seen.map((r) => [r.auth, r.body])).toEqual([
      ["Bearer old-token", "part-bytes"],
      ["Bearer new-token", "part-bytes"],
    ]);
  });

  it("still answers 401 when the config holds the same token, another server's, another account's, or none", async () => {
    for (const stored of [
      { url, token: "old-token", email: was.email },
      { url: "http://other.test", token: "new-token", email: was.email },
      // A login into another account: following it would make this command act there (a submit would create its job).
      { url, token: "new-token", email: "someone-else@test.example" },
      null,
    ]) {
      valid = stored?.token === "old-token" ? "somebody-else" : "new-token";
      const env = { XDG_CONFIG_HOME: join(dir, `b-${Math.random()}`) };
      if (stored) await writeConfig(env, stored);
      seen.length = 0;
      const api = apiClient(url, "old-token", {}, () => storedTokenFor(env, url, was));
      expect((await api.GET("/api/jobs")).response.status).toBe(401);
      expect(seen).toHaveLength(1);
    }
  });

  it("never sends a streamed upload body twice (it would have to hold it all in memory)", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "c") };
    await writeConfig(env, { url, token: "new-token", email: was.email });
    valid = "new-token";
    seen.length = 0;
    const api = apiClient(url, "old-token", {}, () => storedTokenFor(env, url, was));
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("--b\r\n"));
        c.close();
      },
    });
    const res = await api.POST("/api/jobs", {
      body: { videos: [], variations: 1 } as never,
      bodySerializer: () => stream as unknown as string,
      headers: { "content-type": "multipart/form-data; boundary=b" },
      duplex: "half",
    } as never);
    expect(res.response.status).toBe(401);
    expect(seen).toHaveLength(1);
  });
});

describe("a CLI command over its account's request limit", () => {
  /** A stand-in edge that refuses the first `refusals` requests with `code` and then answers 200. */
  async function refusing(refusals: number, code: string, retryAfter: string) {
    const bodies: string[] = [];
    const srv = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        bodies.push(body);
        if (bodies.length <= refusals) {
          res.writeHead(429, { "content-type": "application/json", "retry-after": retryAfter });
          res.end(JSON.stringify({ error: { code, message: "slow down" } }));
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ job: { id: "j1" } }));
        }
      });
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    return { base, bodies, close: () => new Promise((r) => srv.close(r)) };
  }
  const post = (base: string, f: (r: Request) => Promise<Response>) =>
    f(new Request(`${base}/api/jobs/j1/cancel`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"reason":"stop"}' }));

  it("waits Retry-After and sends the refused request again, its body intact, until it goes through", async () => {
    const edge = await refusing(2, "rate_limited", "7");
    const waits: number[] = [];
    try {
      const f = waitingOutRateLimit((r) => fetch(r), async (ms) => void waits.push(ms));
      const res = await post(edge.base, f);
      expect(res.status).toBe(200);
      expect(waits).toEqual([7000, 7000]);
      expect(edge.bodies).toEqual(['{"reason":"stop"}', '{"reason":"stop"}', '{"reason":"stop"}']);
    } finally {
      await edge.close();
    }
  });

  it("gives up after RATE_LIMITED_TRIES, and answers other 429s (a quota) at once", async () => {
    const limited = await refusing(100, "rate_limited", "10");
    const quota = await refusing(100, "quota_exceeded", "60");
    const waits: number[] = [];
    try {
      const f = waitingOutRateLimit((r) => fetch(r), async (ms) => void waits.push(ms));
      expect((await post(limited.base, f)).status).toBe(429);
      expect(limited.bodies).toHaveLength(RATE_LIMITED_TRIES);
      waits.length = 0;
      const refused = await post(quota.base, f);
      expect([refused.status, ((await refused.json()) as { error: { code: string } }).error.code]).toEqual([429, "quota_exceeded"]);
      expect([quota.bodies.length, waits]).toEqual([1, []]);
    } finally {
      await limited.close();
      await quota.close();
    }
  });
});
