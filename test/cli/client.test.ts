import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient } from "../../cli/client";
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
