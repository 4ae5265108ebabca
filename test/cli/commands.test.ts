import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readConfig, writeConfig } from "../../cli/config";
import { EXIT } from "../../cli/errors";
import { runCli } from "../../cli/main";
import { runCapturedCli, standInEdge } from "../helpers/cli";

/** A stand-in edge whose answer to the token revocation the test sets; it records the revocations it saw. */
let server: Server;
let url: string;
let dir: string;
let answer: "down" | "gone" | "ok" = "down";
const revocations: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-cli-commands-"));
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.method === "DELETE") revocations.push(req.url ?? "");
      const [status, body] =
        answer === "down"
          ? [503, '{"error":{"code":"db_unavailable","message":"The database is unavailable; try again"}}']
          : answer === "gone"
            ? [404, '{"error":{"code":"not_found","message":"Not found"}}']
            : [200, '{"revoked":true}'];
      res.writeHead(status, { "content-type": "application/json" });
      res.end(body);
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

const cli = (argv: string[], env: Record<string, string>) => runCapturedCli(argv, env);

describe("video-refresher logout", () => {
  it("keeps the login when the server cannot revoke the token, so a later logout still can", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "a") };
    await writeConfig(env, { url, token: "tok-a", tokenId: "t-a", email: "me@test.example" });
    answer = "down";
    const failed = await cli(["logout"], env);
    expect(failed.code).toBe(EXIT.failed);
    expect(failed.err).toMatch(/could not revoke the API token.*still logged in.*logout --forget/);
    expect(await readConfig(env)).toMatchObject({ token: "tok-a", tokenId: "t-a" });

    answer = "ok";
    const done = await cli(["logout", "--json"], env);
    expect([done.code, JSON.parse(done.out)]).toEqual([EXIT.ok, { loggedOut: true, revoked: true }]);
    expect(await readConfig(env)).toBeUndefined();
    expect(revocations.slice(-2)).toEqual(["/api/tokens/t-a", "/api/tokens/t-a"]);
  });

  it("with --forget, removes the login anyway and says the token still works", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "b") };
    await writeConfig(env, { url, token: "tok-b", tokenId: "t-b" });
    answer = "down";
    const r = await cli(["logout", "--forget", "--json"], env);
    expect(r.code).toBe(EXIT.ok);
    expect(JSON.parse(r.out)).toMatchObject({ loggedOut: true, revoked: false, reason: expect.stringMatching(/not revoked.*tokens page/) });
    expect(await readConfig(env)).toBeUndefined();
  });

  it("counts a token the server no longer knows as revoked", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "c") };
    await writeConfig(env, { url, token: "tok-c", tokenId: "t-c" });
    answer = "gone";
    const r = await cli(["logout", "--json"], env);
    expect([r.code, JSON.parse(r.out)]).toEqual([EXIT.ok, { loggedOut: true, revoked: true }]);
    expect(await readConfig(env)).toBeUndefined();
  });
});

describe("video-refresher logout of a login stored over plain http to another machine", () => {
  it("does not send the token in clear to revoke it; --forget removes it here and says to revoke it on the tokens page", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "e") };
    await writeConfig(env, { url: "http://video.example.com", token: "tok-e", tokenId: "t-e" });
    const refused = await cli(["logout"], env);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.err).toMatch(/plain http.*logout --forget/);
    expect(await readConfig(env)).toMatchObject({ token: "tok-e" });
    const forgot = await cli(["logout", "--forget", "--json"], env);
    expect([forgot.code, JSON.parse(forgot.out)]).toEqual([EXIT.ok, { loggedOut: true, revoked: false, reason: expect.stringMatching(/plain http.*tokens page/) }]);
    expect(await readConfig(env)).toBeUndefined();
  });
});

describe("video-refresher logout of a token given with --token", () => {
  it("only forgets it (nothing is sent), even when its server is plain http to another machine", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "f") };
    await writeConfig(env, { url: "http://video.example.com", token: "tok-f" });
    const r = await cli(["logout", "--json"], env);
    expect([r.code, JSON.parse(r.out)]).toEqual([EXIT.ok, { loggedOut: true, revoked: false, reason: expect.stringMatching(/--token/) }]);
    expect(await readConfig(env)).toBeUndefined();
  });
});

describe("video-refresher login", () => {
  it("refuses to send a password over plain http to another machine, before asking for it", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "d") };
    const r = await cli(["login", "--url", "http://video.example.com", "--email", "me@test.example"], env);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/refusing to send credentials over plain http to video\.example\.com: use https:\/\//);
    expect(await readConfig(env)).toBeUndefined();
  });
});

describe("video-refresher login whose token tries race each other", () => {
  it("sends a try the edge calls in flight again with the same key, and keeps only a secret that works", async () => {
    // A stand-in edge: the first token POST collides with a twin (409 in flight); the second's secret is voided by a
    // late twin before the CLI uses it (401); the third's works.
    const posts: (string | undefined)[] = [];
    const edgeUrl = await standInEdge((req, _body, send) => {
      const user = { id: "u1", email: "me@test.example", role: "user" };
      if (req.url === "/api/auth/login") return send(200, { user }, { "set-cookie": "vr_session=s1; Path=/; HttpOnly" });
      if (req.url === "/api/auth/logout") return send(204, null);
      if (req.url === "/api/me") return req.headers.authorization === "Bearer tok-works" ? send(200, { user }) : send(401, { error: { code: "invalid_token", message: "Invalid or expired token" } });
      if (req.url === "/api/tokens" && req.method === "POST") {
        posts.push(req.headers["idempotency-key"] as string | undefined);
        if (posts.length === 1) return send(409, { error: { code: "idempotency_key_in_flight", message: "Another request with this Idempotency-Key is being answered; send this one again" } });
        const token = posts.length === 2 ? "tok-voided" : "tok-works";
        return send(201, { id: "t1", name: "cli", scope: "full", expiresAt: null, token }, { "idempotent-replayed": "true" });
      }
      send(404, { error: { code: "not_found", message: "Not found" } });
    });
    const env = { XDG_CONFIG_HOME: join(dir, "g") };
    const stdin = new PassThrough();
    stdin.end("the-password\n");
    let err = "";
    const stderr = new PassThrough();
    stderr.on("data", (d) => (err += d));
    const code = await runCli(["login", "--url", edgeUrl, "--email", "me@test.example", "--json"], { stdout: new PassThrough(), stderr, stdin, env });
    expect(code, err).toBe(EXIT.ok);
    expect(await readConfig(env)).toMatchObject({ token: "tok-works", tokenId: "t1" });
    expect(posts).toHaveLength(3);
    expect(new Set(posts).size).toBe(1);
    expect(posts[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(err).toMatch(/being answered; send this one again; trying again \(2 of 3\)/);
    expect(err).toMatch(/replaced the token's secret; trying again \(3 of 3\)/);
  });
});

describe("video-refresher more and resume whose first answer is lost", () => {
  it("send the request again with the same Idempotency-Key, so the edge answers with the job instead of doing it twice", async () => {
    const seen: { url: string; key: string | undefined }[] = [];
    const edgeUrl = await standInEdge((req, _body, json) => {
      seen.push({ url: req.url ?? "", key: req.headers["idempotency-key"] as string | undefined });
      // The first try of each reopen: done, but the answer never arrives.
      if (seen.filter((s) => s.url === req.url).length === 1) return req.socket.destroy();
      const job = { id: "j1", status: "queued", totalVariations: 4, completedVariations: 0, failedVariations: 0, cancelledVariations: 0, files: [] };
      json(200, job, { "idempotent-replayed": "true" });
    });
    const env = { XDG_CONFIG_HOME: join(dir, "reopen") };
    await writeConfig(env, { url: edgeUrl, token: "tok-r" });
    for (const argv of [["more", "j1", "-n", "2"], ["resume", "j1"], ["retry", "j1"]]) {
      const r = await cli([...argv, "--json"], env);
      expect(r.code, r.err).toBe(EXIT.ok);
      expect(JSON.parse(r.out)).toMatchObject({ id: "j1", status: "queued" });
    }
    for (const path of ["/api/jobs/j1/more", "/api/jobs/j1/resume", "/api/jobs/j1/retry"]) {
      const tries = seen.filter((s) => s.url === path);
      expect(tries).toHaveLength(2);
      expect(tries[0]!.key).toMatch(/^[\x21-\x7e]{16,}$/);
      expect(tries[1]!.key).toBe(tries[0]!.key);
    }
  });
});

describe("video-refresher resume refused over quota", () => {
  it("reports the 429 quota_exceeded at once (one request): waiting a second or two frees nothing", async () => {
    const seen: string[] = [];
    const edgeUrl = await standInEdge((req, _body, json) => {
      seen.push(`${req.method} ${req.url}`);
      json(429, { error: { code: "quota_exceeded", message: "Active jobs limit reached (5 of 5)" } }, { "retry-after": "600" });
    });
    const env = { XDG_CONFIG_HOME: join(dir, "quota") };
    await writeConfig(env, { url: edgeUrl, token: "tok-q" });
    for (const argv of [["resume", "j1"], ["more", "j1", "-n", "2"]]) {
      seen.length = 0;
      const r = await cli([...argv, "--json"], env);
      expect(r.code).toBe(EXIT.failed);
      expect(JSON.parse(r.out)).toMatchObject({ error: { code: "quota_exceeded", status: 429 } });
      expect(r.err).not.toMatch(/trying again/);
      expect(seen).toHaveLength(1);
    }
  });
});

describe("human-readable output of what the server sent", () => {
  it("shows control characters as \\xNN, so a job's file name, reason or error cannot drive the terminal; --json is unchanged", async () => {
    // Another user's upload, as an admin's `ls` lists it: OSC 52 (write the clipboard) and a screen clear.
    const name = "clip\u001b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\u0007\u001b[2J\nfake line.mp4";
    const job = {
      id: "j1", status: "cancelled", progress: 0, createdAt: "2030-01-01T00:00:00.000Z", variationsPerVideo: 1,
      totalVariations: 1, completedVariations: 0, failedVariations: 0, cancelledVariations: 1,
      error: "bad \u009b31m", cancelReason: "because\u001b[8m\u202eevil", cancelledBy: "admin\u0007",
      files: [{ id: "f1", name, status: "cancelled", progress: 0, completedVariations: 0, error: null }],
    };
    const edgeUrl = await standInEdge((req, _body, send) => {
      if (req.url?.startsWith("/api/jobs?")) return send(200, { jobs: [job] });
      if (req.url === "/api/jobs/j1") return send(200, job);
      send(409, { error: { code: "not_cancellable", message: `Job ${name} cannot be cancelled` } });
    });
    const env = { XDG_CONFIG_HOME: join(dir, "escapes") };
    await writeConfig(env, { url: edgeUrl, token: "tok-x" });
    const runs = [await cli(["ls"], env), await cli(["status", "j1"], env), await cli(["status", "j1", "--watch", "--interval", "200"], env), await cli(["cancel", "j1"], env)];
    const shown = runs.map((r) => r.out + r.err).join("\n");
    expect(shown).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(shown).toContain("clip\\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\\x07\\x1b[2J\\x0afake line.mp4");
    expect(shown).toContain("cancel reason: because\\x1b[8m\\u202eevil (by admin\\x07)");
    expect(shown).toContain("error: bad \\x9b31m");
    expect(shown).not.toMatch(/^fake line/m);

    const json = await cli(["ls", "--json"], env);
    expect(JSON.parse(json.out).jobs[0].files[0].name).toBe(name);
  });
});

describe("video-refresher login interrupted at its prompt", () => {
  it("exits 130, as Ctrl-C anywhere else does, not 2 (usage)", async () => {
    const env = { XDG_CONFIG_HOME: join(dir, "ctrl-c") };
    // A terminal: readline reads keys in raw mode, so Ctrl-C arrives as the byte 0x03, not as SIGINT.
    const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => stdin });
    const stderr = new PassThrough();
    let err = "";
    stderr.on("data", (d) => {
      err += d;
      if (err.includes("Password: ")) stdin.write("\u0003");
    });
    const code = await runCli(["login", "--url", url, "--email", "me@test.example"], { stdout: new PassThrough(), stderr, stdin, env });
    expect(code).toBe(130);
    expect(await readConfig(env)).toBeUndefined();
  });
});

describe("video-refresher login over a login the CLI made before", () => {
  /** A stand-in edge: a token is revoked only by a request of its own account (else 404, as the edge answers). */
  async function tokenEdge() {
    const state = { revoked: [] as string[], revokeDown: false };
    const url = await standInEdge((req, _body, send) => {
      const auth = req.headers.authorization;
      if (req.url === "/api/me") return auth === "Bearer tok-new" ? send(200, { user: { id: "u2", email: "other@test.example", role: "user" } }) : send(401, { error: { code: "invalid_token", message: "Invalid token" } });
      if (req.url === "/api/auth/login") return send(200, { user: { id: "u2", email: "other@test.example", role: "user" } }, { "set-cookie": "vr_session=s2; Path=/; HttpOnly" });
      if (req.url === "/api/auth/logout") return send(204, null);
      if (req.url === "/api/tokens" && req.method === "POST") return send(201, { id: "t-new", name: "cli", scope: "full", expiresAt: null, token: "tok-new" });
      if (req.method === "DELETE" && req.url === "/api/tokens/t-old") {
        if (state.revokeDown) return send(503, { error: { code: "db_unavailable", message: "The database is unavailable" } });
        if (auth !== "Bearer tok-old") return send(404, { error: { code: "not_found", message: "Not found" } });
        state.revoked.push("t-old");
        return send(200, { revoked: true });
      }
      send(404, { error: { code: "not_found", message: "Not found" } });
    });
    return { state, url };
  }

  it("revokes the token it made before, for --token and for a password login to another account", async () => {
    const { state, url: edgeUrl } = await tokenEdge();
      const env = { XDG_CONFIG_HOME: join(dir, "relogin") };
      await writeConfig(env, { url: edgeUrl, token: "tok-old", tokenId: "t-old", email: "me@test.example" });
      const byToken = await cli(["login", "--url", edgeUrl, "--token", "tok-new"], env);
      expect(byToken.code, byToken.err).toBe(EXIT.ok);
      expect(state.revoked).toEqual(["t-old"]);

      state.revoked.length = 0;
      await writeConfig(env, { url: edgeUrl, token: "tok-old", tokenId: "t-old", email: "me@test.example" });
      const stdin = new PassThrough();
      stdin.end("the-password\n");
      const code = await runCli(["login", "--url", edgeUrl, "--email", "other@test.example"], { stdout: new PassThrough(), stderr: new PassThrough(), stdin, env });
      expect(code).toBe(EXIT.ok);
      expect(state.revoked).toEqual(["t-old"]);
      expect(await readConfig(env)).toMatchObject({ token: "tok-new", tokenId: "t-new" });
  });

  it("says the old token still works, naming it, when the server cannot revoke it", async () => {
    const { state, url: edgeUrl } = await tokenEdge();
      const env = { XDG_CONFIG_HOME: join(dir, "relogin-down") };
      await writeConfig(env, { url: edgeUrl, token: "tok-old", tokenId: "t-old", email: "me@test.example" });
      state.revokeDown = true;
      const r = await cli(["login", "--url", edgeUrl, "--token", "tok-new"], env);
      expect(r.code).toBe(EXIT.ok);
      expect(r.err).toMatch(/API token t-old .*was not revoked \(The database is unavailable\) and still works/);
      expect(await readConfig(env)).toMatchObject({ token: "tok-new" });
  });
});

describe("video-refresher login --token with the token it already holds", () => {
  it("keeps the token's id, so a later logout can still revoke it", async () => {
    const url = await standInEdge((req, _body, json) => {
      if (req.url === "/api/me") return json(200, { user: { id: "u1", email: "me@test.example", role: "user" } });
      json(404, { error: { code: "not_found", message: "no" } });
    });
    const env = { XDG_CONFIG_HOME: join(dir, "same-token") };
    await writeConfig(env, { url, token: "tok-same", tokenId: "t-same", email: "me@test.example" });
    const r = await cli(["login", "--url", url, "--token", "tok-same"], env);
    expect(r.code, r.err).toBe(EXIT.ok);
    expect(await readConfig(env)).toMatchObject({ url, token: "tok-same", tokenId: "t-same" });
  });
});
