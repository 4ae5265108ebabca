import { spawn, type ChildProcess } from "node:child_process";
import { copyFile, open, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import { createUser } from "../../db/queries/users";
import { makeClip, makeNotAVideo } from "../helpers/clips";
import { startEdgeStack, type EdgeStack } from "../helpers/edge-stack";
import { freePort } from "../helpers/ports";
import { startRunnerProcess, type RunnerProcess } from "../helpers/runner";
import { tempDirs } from "../helpers/tmp";
import { until } from "../helpers/until";
import { readStoredZip } from "../ui/zip";

/**
 * The `video-refresher` CLI end to end: the real program (node cli/bin.js, as `npx video-refresher` runs it) against
 * `wrangler dev` + libSQL + a runner process, with its own config dir per test.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const temps = tempDirs("vr-cli");
const cleanup: (() => Promise<void>)[] = [];
let stack: EdgeStack;
let clip: string;

beforeAll(async () => {
  [stack, clip] = await Promise.all([startEdgeStack("cli"), makeClip({ seconds: 2 })]);
}, 120_000);
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  await stack.settleLeftovers();
});
afterAll(async () => {
  await stack?.close();
  await temps.cleanup();
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Parsed stdout (commands given --json print one JSON document). */
  json(): any;
}

/** Environment without the caller's own VIDEO_REFRESHER_* settings; config lives in `configHome`. */
function cliEnv(configHome: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome, HOME: configHome, ...extra };
  for (const k of Object.keys(env)) if (k.startsWith("VIDEO_REFRESHER_") && !(k in extra)) delete env[k];
  return env;
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv, input?: string): { child: ChildProcess; done: Promise<Run>; stderr(): string } {
  const child = spawn(process.execPath, [join(ROOT, "cli/bin.js"), ...args], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  child.stdin!.end(input ?? "");
  const done = new Promise<Run>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr, json: () => JSON.parse(stdout) })),
  );
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await done;
    }
  });
  return { child, done, stderr: () => stderr };
}

const cli = (args: string[], env: NodeJS.ProcessEnv, input?: string) => spawnCli(args, env, input).done;

async function startRunner(): Promise<RunnerProcess> {
  const r = startRunnerProcess(stack.runnerEnv({ WORK_DIR: await stack.workDir() }));
  cleanup.push(() => r.destroy());
  return r;
}

async function apiToken(): Promise<string> {
  const res = await stack.user.call("/api/tokens", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: `cli-test-${newId().slice(0, 6)}` }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

/** A config dir where `login --token` has run. */
async function loggedIn(): Promise<NodeJS.ProcessEnv> {
  const env = cliEnv(await temps.make());
  const login = await cli(["login", "--url", stack.edge.url, "--token", await apiToken(), "--json"], env);
  expect(login.code, login.stderr).toBe(0);
  return env;
}

/** Starts a test proxy on a free local port, closed (with its open connections) after the test; its URL. */
async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  cleanup.push(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  server.unref();
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** An HTTP proxy in front of the edge that records "METHOD path" of every request (what the CLI really sent). */
async function recordingProxy(): Promise<{ url: string; requests: string[] }> {
  const target = new URL(stack.edge.url);
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  return { url: await listen(server), requests };
}

/**
 * A proxy in front of the edge that passes the first response's first `limit` body bytes and then stalls (as a
 * dead connection does), then passes every later request through; records the Range header of each request.
 */
async function stallingProxy(limit: number): Promise<{ url: string; ranges: (string | undefined)[] }> {
  const target = new URL(stack.edge.url);
  const ranges: (string | undefined)[] = [];
  let stalled = false;
  const server: Server = createServer((req, res) => {
    ranges.push(req.headers.range);
    const stallThis = !stalled;
    stalled = true;
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (!stallThis) return void up.pipe(res);
        let sent = 0;
        up.on("data", (chunk: Buffer) => {
          const piece = chunk.subarray(0, Math.max(0, limit - sent));
          sent += piece.length;
          if (piece.length) res.write(piece);
          if (sent >= limit) up.destroy();
        });
      },
    );
    upstream.on("error", () => {});
    req.pipe(upstream);
  });
  return { url: await listen(server), ranges };
}

/**
 * A proxy in front of the edge that lets the first `POST /api/jobs` reach the edge and complete there, then drops
 * the connection instead of passing the answer on (a reply lost after the commit) — or, with "swallow", takes its
 * body and never answers; records that request's Idempotency-Key, job id and the later ones' keys and replay headers.
 */
async function replyDroppingProxy(
  first: "drop-answer" | "swallow" = "drop-answer",
  /** Swallow every later job POST too (never answered) until `open()`: a first run that cannot finish on its own. */
  holdLater = false,
  /** The creating POST it acts on (its answer's `id` is recorded as `jobId`). */
  path = "/api/jobs",
): Promise<{ url: string; posts: { key: string | undefined; jobId?: string; replayed?: string; dropped: boolean }[]; open(): void }> {
  const target = new URL(stack.edge.url);
  type Post = { key: string | undefined; jobId?: string; replayed?: string; dropped: boolean };
  const posts: Post[] = [];
  let holding = holdLater;
  const server: Server = createServer((req, res) => {
    const isCreate = req.method === "POST" && req.url === path;
    if (isCreate && holding && posts.length > 0) return void req.resume();
    const post: Post | null = isCreate ? { key: req.headers["idempotency-key"] as string | undefined, dropped: posts.length === 0 } : null;
    if (post) posts.push(post);
    if (post?.dropped && first === "swallow") {
      // A wedged edge: the body is taken, no answer ever comes (the request never reaches the edge).
      req.resume();
      return;
    }
    // Uncompressed, so the dropped answer's job id can be read here.
    const { "accept-encoding": _encoding, ...headers } = req.headers;
    const upstream = request(
      // A signed-in CLI sends its site's Origin (the proxy's): the edge sees its own, as behind a real front end.
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...headers, host: target.host, ...(headers.origin ? { origin: target.origin } : {}) } },
      (up) => {
        if (post?.dropped) {
          const chunks: Buffer[] = [];
          up.on("data", (c: Buffer) => chunks.push(c));
          up.on("end", () => {
            post.jobId = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id?: string }).id;
            res.socket?.destroy();
          });
          return;
        }
        if (post) post.replayed = up.headers["idempotent-replayed"] as string | undefined;
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  return { url: await listen(server), posts, open: () => void (holding = false) };
}

/**
 * The test clip followed by a `free` box (ignored by every MP4 reader) so the file is large enough for three 8 MiB
 * upload parts yet as quick to encode as the clip.
 */
async function paddedClip(totalBytes: number): Promise<string> {
  const path = join(await temps.make(), "big.mp4");
  await copyFile(clip, path);
  const pad = totalBytes - (await stat(clip)).size;
  const fh = await open(path, "a");
  try {
    const header = Buffer.alloc(8);
    header.writeUInt32BE(pad, 0);
    header.write("free", 4, "latin1");
    await fh.write(header);
    const zeros = Buffer.alloc(1024 * 1024);
    for (let left = pad - 8; left > 0; left -= zeros.length) await fh.write(zeros, 0, Math.min(left, zeros.length));
  } finally {
    await fh.close();
  }
  return path;
}

describe("video-refresher CLI against the real stack", { timeout: 180_000 }, () => {
  it("logs in with a token, submits a clip with --wait --json (exit 0, completed) and downloads a ZIP with both variations", async () => {
    await startRunner();
    const env = await loggedIn();
    const configFile = join(env.XDG_CONFIG_HOME!, "video-refresher/config.json");
    expect((await stat(configFile)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(configFile, "utf8"))).toMatchObject({ url: stack.edge.url });

    const submit = await cli(["submit", clip, "-n", "2", "--effects", "color,mirror", "--intensity", "medium", "--wait", "--json", "--interval", "300"], env);
    expect(submit.code, submit.stderr).toBe(0);
    const { job, uploads } = submit.json();
    expect(job).toMatchObject({ status: "completed", totalVariations: 2, completedVariations: 2, effects: { intensity: "medium", families: ["color", "mirror"] } });
    expect(uploads).toEqual([expect.objectContaining({ via: "form" })]);
    // Not a terminal: plain progress lines on stderr, nothing but the document on stdout.
    expect(submit.stderr).toMatch(/upload .*: 100%/);

    // A .part without the state of the download that left it cannot be trusted: discarded, the ZIP fetched whole.
    const out = await temps.make();
    await writeFile(join(out, `video-refresher-${job.id}.zip.part`), "half a zip");
    const download = await cli(["download", job.id, "-o", out, "--json"], env);
    expect(download.code, download.stderr).toBe(0);
    // The check of every byte after the download shows as progress of its own, to its end.
    expect(download.stderr).toMatch(new RegExp(`check ${job.id}\\.zip: 100%`));
    const result = download.json();
    expect(result).toMatchObject({ jobId: job.id, restarted: true, file: join(out, `video-refresher-${job.id}.zip`) });
    expect(await readdir(out)).toEqual([`video-refresher-${job.id}.zip`]);
    const entries = readStoredZip(await readFile(result.file));
    expect(entries.map((e) => e.name)).toHaveLength(4);
    expect(entries.slice(0, 2).every((e) => /_var0[12]\.mp4$/.test(e.name))).toBe(true);
    expect(entries.slice(2).map((e) => e.name)).toEqual(["manifest.json", "manifest.csv"]);

    // A download interrupted mid-stream (the program killed while the connection stalls) keeps every byte it
    // received; the re-run asks for the rest only and ends with the same ZIP.
    const cut = await stallingProxy(3000);
    const resumeDir = await temps.make();
    const token = await apiToken();
    const partFile = join(resumeDir, `video-refresher-${job.id}.zip.part`);
    const broken = spawnCli(["download", job.id, "-o", resumeDir, "--json"], { ...env, VIDEO_REFRESHER_URL: cut.url, VIDEO_REFRESHER_TOKEN: token });
    await until("the first 3000 bytes on disk", async () => (await stat(partFile).catch(() => null))?.size === 3000, 30_000);
    broken.child.kill("SIGKILL");
    expect((await broken.done).signal).toBe("SIGKILL");
    const resumed = await cli(["download", job.id, "-o", resumeDir, "--json"], { ...env, VIDEO_REFRESHER_URL: cut.url, VIDEO_REFRESHER_TOKEN: token });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json()).toMatchObject({ resumedFrom: 3000, restarted: false });
    expect(cut.ranges).toEqual([undefined, "bytes=3000-"]);
    expect(Buffer.compare(await readFile(resumed.json().file), await readFile(result.file))).toBe(0);
    expect(await readdir(resumeDir)).toEqual([`video-refresher-${job.id}.zip`]);

    const unzipDir = await temps.make();
    const unzip = await cli(["download", job.id, "-o", unzipDir, "--unzip", "--json"], env);
    expect(unzip.code, unzip.stderr).toBe(0);
    expect(unzip.json().extracted).toHaveLength(4);
    expect((await readdir(unzipDir, { recursive: true })).filter((f) => f.endsWith(".mp4"))).toHaveLength(2);

    // More variations for the finished job, followed to the end; retry then has nothing to do (409 → exit 1).
    const more = await cli(["more", job.id, "-n", "1", "--wait", "--json", "--interval", "300"], env);
    expect(more.code, more.stderr).toBe(0);
    expect(more.json()).toMatchObject({ status: "completed", totalVariations: 3, completedVariations: 3 });
    const retry = await cli(["retry", job.id, "--json"], env);
    expect(retry.code).toBe(1);
    expect(retry.json()).toMatchObject({ error: { status: 409 } });

    const ls = await cli(["ls", "--status", "completed", "--json"], env);
    expect(ls.code).toBe(0);
    expect(ls.json().jobs.map((j: { id: string }) => j.id)).toContain(job.id);
    const status = await cli(["status", job.id, "--watch", "--json"], env);
    expect([status.code, status.json().status]).toEqual([0, "completed"]);
  });

  it("exits 1 when a job submitted with --wait fails, and prints the failed job", async () => {
    await startRunner();
    const env = await loggedIn();
    const submit = await cli(["submit", await makeNotAVideo(), "-n", "1", "--wait", "--json", "--interval", "300"], env);
    expect(submit.code, submit.stderr).toBe(1);
    expect(submit.json().job).toMatchObject({ status: "failed", failedVariations: 1 });
  });

  it("resumes an interrupted large upload: a re-run of submit sends only the parts the killed run did not store", async () => {
    const proxy = await recordingProxy();
    const configHome = await temps.make();
    const env = cliEnv(configHome, {
      VIDEO_REFRESHER_URL: proxy.url,
      VIDEO_REFRESHER_TOKEN: await apiToken(),
      VIDEO_REFRESHER_MULTIPART_BYTES: String(1024 * 1024),
    });
    const big = await paddedClip(17 * 1024 * 1024); // 3 parts of 8 MiB

    // First run: stands still after part 1 is stored (test hook), then is killed like a crashed render node.
    const first = spawnCli(["submit", big, "-n", "1", "--json"], { ...env, VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS: "1" });
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (/halted after 1 part/.test(first.stderr())) resolve();
        else if (first.child.exitCode !== null) reject(new Error(`CLI exited early:\n${first.stderr()}`));
      }, 50);
      void first.done.finally(() => clearInterval(timer));
      setTimeout(() => reject(new Error(`no halt line:\n${first.stderr()}`)), 60_000).unref();
    });
    first.child.kill("SIGKILL");
    expect((await first.done).signal).toBe("SIGKILL");
    const partPuts = () => proxy.requests.filter((r) => /^PUT \/api\/uploads\/[^/]+\/parts\/\d+$/.test(r));
    expect(partPuts()).toEqual([expect.stringMatching(/\/parts\/1$/)]);
    const state = JSON.parse(await readFile(join(configHome, "video-refresher/uploads.json"), "utf8"));
    expect(Object.values(state)).toEqual([expect.objectContaining({ parts: [1], partCount: 3, completed: false })]);

    await startRunner();
    const second = await cli(["submit", big, "-n", "1", "--wait", "--json", "--interval", "300"], env);
    expect(second.code, second.stderr).toBe(0);
    const { job, uploads } = second.json();
    expect(job.status).toBe("completed");
    expect(uploads).toEqual([expect.objectContaining({ via: "multipart", partsSkipped: [1], partsSent: [2, 3] })]);
    // What went over the wire: part 1 once (first run only), parts 2 and 3 once each, one upload created.
    expect(partPuts().map((r) => r.replace(/.*\/parts\//, "")).sort()).toEqual(["1", "2", "3"]);
    expect(proxy.requests.filter((r) => r === "POST /api/uploads")).toHaveLength(1);
    expect(second.stderr).toMatch(/resuming upload/);
    // The finished upload is forgotten.
    expect(JSON.parse(await readFile(join(configHome, "video-refresher/uploads.json"), "utf8"))).toEqual({});
  });

  it("submits once when the answer to its job POST is lost: the retry carries the same Idempotency-Key and prints the job the first made", async () => {
    const proxy = await replyDroppingProxy();
    const env = cliEnv(await temps.make(), { VIDEO_REFRESHER_URL: proxy.url, VIDEO_REFRESHER_TOKEN: await apiToken() });
    // 20 MiB: one form POST (under the 64 MiB threshold), and more than the edge drains of a body it does not read:
    // the retry is answered only if the edge reads the re-sent form to its end.
    const file = await paddedClip(20 * 1024 * 1024);
    const submit = await cli(["submit", file, "-n", "1", "--json"], env);
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stderr).toMatch(/creating the job: .*trying again \(2 of 3\)/);
    const [first, retry, ...more] = proxy.posts;
    expect(more).toEqual([]);
    expect(first).toMatchObject({ dropped: true, key: expect.stringMatching(/^[0-9a-f]{32}$/), jobId: expect.any(String) });
    expect(retry).toMatchObject({ dropped: false, key: first!.key, replayed: "true" });
    expect(submit.json().job.id).toBe(first!.jobId);
    const res = await stack.user.call("/api/jobs?limit=100");
    const listed = ((await res.json()) as { jobs: { id: string; files: { name: string }[]; createdAt: string }[] }).jobs;
    const since = Date.parse(listed.find((j) => j.id === first!.jobId)!.createdAt);
    expect(listed.filter((j) => Date.parse(j.createdAt) >= since).map((j) => j.id)).toEqual([first!.jobId]);
  });

  it("a re-run of a submit killed before it saw its job's answer prints the job the first run made, not a second one", async () => {
    const proxy = await replyDroppingProxy("drop-answer", true);
    const env = cliEnv(await temps.make(), { VIDEO_REFRESHER_URL: proxy.url, VIDEO_REFRESHER_TOKEN: await apiToken() });
    // The first run's POST made the job but its answer was lost; its retries are never answered; then it is killed.
    const first = spawnCli(["submit", clip, "-n", "1", "--json"], env);
    await until("the first run's job", async () => proxy.posts[0]?.jobId !== undefined, 30_000);
    first.child.kill("SIGKILL");
    expect((await first.done).signal).toBe("SIGKILL");
    proxy.open();

    const again = await cli(["submit", clip, "-n", "1", "--json"], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.json().job.id).toBe(proxy.posts[0]!.jobId);
    expect(proxy.posts.at(-1)).toMatchObject({ key: proxy.posts[0]!.key, replayed: "true" });
    // Answered: the key is done, so the next submit of the same file is a new job.
    const third = await cli(["submit", clip, "-n", "1", "--json"], env);
    expect(third.code, third.stderr).toBe(0);
    expect(third.json().job.id).not.toBe(proxy.posts[0]!.jobId);
  });

  it("gives up a form POST the edge never answers after VIDEO_REFRESHER_FORM_STALL_MS and tries again with the same key", async () => {
    const proxy = await replyDroppingProxy("swallow");
    const env = cliEnv(await temps.make(), {
      VIDEO_REFRESHER_URL: proxy.url,
      VIDEO_REFRESHER_TOKEN: await apiToken(),
      // Long enough for a loaded machine's edge to answer a healthy try; short enough for a test.
      VIDEO_REFRESHER_FORM_STALL_MS: "10000",
    });
    const submit = await cli(["submit", clip, "-n", "1", "--json"], env);
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stderr).toMatch(/creating the job: .*timed out.*trying again \(2 of 3\)/);
    // Every try carries the first one's key (a slow edge may make a second try time out too: its job is then
    // answered to the third, still one job).
    const [first, ...later] = proxy.posts;
    expect(first).toMatchObject({ dropped: true, key: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(later.length).toBeGreaterThanOrEqual(1);
    expect(later.every((p) => p.key === first!.key)).toBe(true);
    const { job } = submit.json();
    expect(job).toMatchObject({ status: "queued", totalVariations: 1 });
    const listed = ((await (await stack.user.call("/api/jobs?limit=100")).json()) as { jobs: { id: string; createdAt: string }[] }).jobs;
    expect(listed.filter((j) => Date.parse(j.createdAt) >= Date.parse(job.createdAt)).map((j) => j.id)).toEqual([job.id]);
  });

  it("cancels a queued job with a reason, then every queued job with --all-queued; status --watch of a cancelled job exits 1", async () => {
    // No runner here: the jobs stay queued until cancelled.
    const env = await loggedIn();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await cli(["submit", clip, "-n", "1", "--json"], env);
      expect(r.code, r.stderr).toBe(0);
      ids.push(r.json().job.id);
    }
    const one = await cli(["cancel", ids[0]!, "--reason", "wrong cut", "--json"], env);
    expect(one.code, one.stderr).toBe(0);
    expect(one.json().results).toEqual([{ id: ids[0], status: "cancelled", previousStatus: "queued" }]);
    expect(one.json().job.cancelReason).toBe("wrong cut");

    const all = await cli(["cancel", "--all-queued", "--json"], env);
    expect(all.code, all.stderr).toBe(0);
    expect(all.json().results.map((r: { id: string; status: string }) => [r.id, r.status]).sort()).toEqual(
      [[ids[1], "cancelled"], [ids[2], "cancelled"]].sort(),
    );

    const watch = await cli(["status", ids[0]!, "--watch", "--json"], env);
    expect([watch.code, watch.json().status]).toEqual([1, "cancelled"]);

    const unknown = await cli(["cancel", "no-such-job"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^video-refresher: .+/m);
    expect(unknown.stderr).not.toMatch(/\n\s+at /);
  });

  it("logs in once when the token's answer is lost: the retry gets that token, so the account holds one token and it works", async () => {
    const email = `cli-${newId().slice(0, 8)}@test.example`;
    const password = `pw-${newId()}`;
    await createUser(stack.db, { email, password, role: "user" });
    const proxy = await replyDroppingProxy("drop-answer", false, "/api/tokens");
    const env = cliEnv(await temps.make());
    const login = await cli(["login", "--url", proxy.url, "--email", email, "--json"], env, `${password}\n`);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stderr).toMatch(/creating the API token: .*trying again \(2 of 3\)/);
    expect(proxy.posts.map((p) => [p.dropped, p.replayed])).toEqual([[true, undefined], [false, "true"]]);
    expect(proxy.posts[1]!.key).toBe(proxy.posts[0]!.key);
    const stored = JSON.parse(await readFile(join(env.XDG_CONFIG_HOME!, "video-refresher/config.json"), "utf8")) as { token: string; tokenId: string };
    expect(stored.tokenId).toBe(proxy.posts[0]!.jobId);
    const tokens = await fetch(`${stack.edge.url}/api/tokens`, { headers: { authorization: `Bearer ${stored.token}` } });
    expect(tokens.status).toBe(200);
    expect(((await tokens.json()) as { tokens: { id: string }[] }).tokens.map((t) => t.id)).toEqual([stored.tokenId]);
  });

  it("logs in with email and password from stdin, creating an API token that logout revokes", async () => {
    const email = `cli-${newId().slice(0, 8)}@test.example`;
    const password = `pw-${newId()}`;
    await createUser(stack.db, { email, password, role: "user" });
    const env = cliEnv(await temps.make());
    const login = await cli(["login", "--url", stack.edge.url, "--email", email, "--json"], env, `${password}\n`);
    expect(login.code, login.stderr).toBe(0);
    expect(login.json()).toMatchObject({ user: { email } });
    const configFile = join(env.XDG_CONFIG_HOME!, "video-refresher/config.json");
    const stored = JSON.parse(await readFile(configFile, "utf8"));
    expect(stored).toMatchObject({ url: stack.edge.url, tokenId: login.json().tokenId });
    expect((await stat(configFile)).mode & 0o777).toBe(0o600);
    expect((await cli(["ls", "--json"], env)).code).toBe(0);

    // Logging in again replaces the token: the old one is revoked, so repeated logins (a CI) do not pile tokens up.
    const again = await cli(["login", "--url", stack.edge.url, "--email", email, "--json"], env, `${password}\n`);
    expect(again.code, again.stderr).toBe(0);
    const replaced = await fetch(`${stack.edge.url}/api/me`, { headers: { authorization: `Bearer ${stored.token}` } });
    expect(replaced.status).toBe(401);
    const current = JSON.parse(await readFile(configFile, "utf8"));
    expect(current.tokenId).toBe(again.json().tokenId);
    const tokens = await fetch(`${stack.edge.url}/api/tokens`, { headers: { authorization: `Bearer ${current.token}` } });
    expect(((await tokens.json()) as { tokens: { id: string }[] }).tokens.map((t) => t.id)).toEqual([current.tokenId]);

    const logout = await cli(["logout", "--json"], env);
    expect([logout.code, logout.json()]).toEqual([0, { loggedOut: true, revoked: true }]);
    await expect(stat(configFile)).rejects.toThrow();
    const me = await fetch(`${stack.edge.url}/api/me`, { headers: { authorization: `Bearer ${current.token}` } });
    expect(me.status).toBe(401);

    const wrong = await cli(["login", "--url", stack.edge.url, "--email", email, "--json"], env, "not-the-password\n");
    expect(wrong.code).toBe(3);
    expect(wrong.json().error.code).toBe("invalid_credentials");
  });

  it("still logs in where it signed in before while someone else's wrong guesses have the account locked (device cookie kept across logout)", async () => {
    const email = `cli-${newId().slice(0, 8)}@test.example`;
    const password = `pw-${newId()}`;
    await createUser(stack.db, { email, password, role: "user" });
    const env = cliEnv(await temps.make());
    const first = await cli(["login", "--url", stack.edge.url, "--email", email, "--json"], env, `${password}\n`);
    expect(first.code, first.stderr).toBe(0);
    expect((await cli(["logout", "--json"], env)).code).toBe(0);
    // Someone else guesses until the account's counter locks it.
    let status = 0;
    for (let i = 0; i < 10 && status !== 429; i++) {
      const res = await fetch(`${stack.edge.url}/api/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email, password: `guess-${i}` }),
      });
      status = res.status;
      await res.body?.cancel();
    }
    expect(status).toBe(429);
    // A CLI that never signed in here is locked out with the right password; the one that did is not.
    const elsewhere = await cli(["login", "--url", stack.edge.url, "--email", email, "--json"], cliEnv(await temps.make()), `${password}\n`);
    expect(elsewhere.json().error).toMatchObject({ status: 429 });
    const again = await cli(["login", "--url", stack.edge.url, "--email", email, "--json"], env, `${password}\n`);
    expect(again.code, again.stderr).toBe(0);
    expect((await stat(join(env.XDG_CONFIG_HOME!, "video-refresher/devices.json"))).mode & 0o777).toBe(0o600);
  });

  it("exits 3 with the API's message for a bad token, 4 when the edge is down, 2 for a usage error", async () => {
    const badToken = await cli(["ls", "--json"], cliEnv(await temps.make(), { VIDEO_REFRESHER_URL: stack.edge.url, VIDEO_REFRESHER_TOKEN: "not-a-token" }));
    expect(badToken.code).toBe(3);
    expect(badToken.json().error).toMatchObject({ status: 401 });
    expect(badToken.stderr).toMatch(/^video-refresher: .+/m);
    expect(badToken.stderr).not.toMatch(/\n\s+at /);
    const badLogin = await cli(["login", "--url", stack.edge.url, "--token", "not-a-token"], cliEnv(await temps.make()));
    expect(badLogin.code).toBe(3);
    // `--token -` takes it from stdin (out of ps and shell history): a bad one is refused the same way, a good one stored.
    expect((await cli(["login", "--url", stack.edge.url, "--token", "-"], cliEnv(await temps.make()), "not-a-token\n")).code).toBe(3);
    const token = await apiToken();
    const stdinEnv = cliEnv(await temps.make());
    const fromStdin = await cli(["login", "--url", stack.edge.url, "--token", "-", "--json"], stdinEnv, `${token}\n`);
    expect(fromStdin.code, fromStdin.stderr).toBe(0);
    expect(JSON.parse(await readFile(join(stdinEnv.XDG_CONFIG_HOME!, "video-refresher/config.json"), "utf8"))).toMatchObject({ token });

    const down = `http://127.0.0.1:${await freePort()}`;
    const offline = await cli(["status", "some-job", "--json"], cliEnv(await temps.make(), { VIDEO_REFRESHER_URL: down, VIDEO_REFRESHER_TOKEN: "t" }));
    expect(offline.code).toBe(4);
    expect(offline.stderr).toMatch(/cannot reach .*ECONNREFUSED/);
    expect(offline.json().error.code).toBe("network");

    const usage = await cli(["submit", clip], cliEnv(await temps.make()));
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--variations/);
  });
});
