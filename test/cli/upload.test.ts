import { createServer, type Server } from "node:http";
import { appendFile, mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { apiClient } from "../../cli/client";
import { parseCliEnv, type ConfigPlace } from "../../cli/env";
import { CliError, EXIT } from "../../cli/errors";
import type { Progress } from "../../cli/progress";
import { submitFingerprint } from "../../cli/submit-keys";
import { type LocalFile, statFiles, uploadAndCreateJob, UploadState } from "../../cli/upload";
import { standInEdge } from "../helpers/cli";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet: Progress = { bar: () => ({ update() {}, increment() {}, setTotal() {} }), log() {}, stop() {} };

/** What an earlier run left in uploads.json for this file: upload u1, completed. */
async function seedCompletedUpload(env: ConfigPlace, url: string, file: LocalFile): Promise<void> {
  const state = await UploadState.load(env);
  state.set(url, file, { uploadId: "u1", partSize: 64 * 1024, partCount: 1, parts: [1], completed: true, startedAt: new Date().toISOString() });
  await state.save();
}

/** A server that reads every POST /api/jobs body to its end and answers 202; counts the requests it got. */
async function jobsServer(): Promise<{ url: string; posts: () => number }> {
  let posts = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === "POST" && req.url === "/api/jobs") posts++;
    req.on("data", () => {});
    req.on("end", () => res.writeHead(202, { "content-type": "application/json" }).end(JSON.stringify({ id: "j1" })));
    req.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, posts: () => posts };
}

describe("CLI form upload", () => {
  it("reports a file that shrank after it was chosen as file_changed (exit 1), without sending it again", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "clip.mp4");
    await writeFile(path, Buffer.alloc(3 * 1024 * 1024, 7));
    const files = await statFiles([path]);
    // Shortened between the CLI's stat and the upload: the announced Content-Length can no longer be met.
    await truncate(path, 1024 * 1024);
    const server = await jobsServer();

    const err = await uploadAndCreateJob(
      { api: apiClient(server.url, "token"), url: server.url, env: parseCliEnv({ XDG_CONFIG_HOME: dir }), progress: quiet, sleep: async () => {} },
      files,
      2,
    ).then(() => null, (e: unknown) => e);

    expect(err).toBeInstanceOf(CliError);
    expect(err).toMatchObject({ code: "file_changed", exitCode: EXIT.failed, message: "clip.mp4 changed while it was being sent" });
    // A changed file stays changed: trying again would only send the same wrong bytes.
    expect(server.posts()).toBe(1);
  });

  it("reports a file that grew after it was chosen as file_changed, sending no byte past the announced length", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "clip.mp4");
    await writeFile(path, Buffer.alloc(1024 * 1024, 7));
    const files = await statFiles([path]);
    await appendFile(path, Buffer.alloc(2 * 1024 * 1024, 8));
    const server = await jobsServer();

    const err = await uploadAndCreateJob(
      { api: apiClient(server.url, "token"), url: server.url, env: parseCliEnv({ XDG_CONFIG_HOME: dir }), progress: quiet, sleep: async () => {} },
      files,
      2,
    ).then(() => null, (e: unknown) => e);

    expect(err).toMatchObject({ code: "file_changed", exitCode: EXIT.failed });
    expect(server.posts()).toBe(1);
  });
});

describe("CLI submit refused by a limit", () => {
  it("reports 429 quota_exceeded at once instead of sending the job again: only runners' work frees the room", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "clip.mp4");
    await writeFile(path, Buffer.alloc(1024, 7));
    let posts = 0;
    const url = await standInEdge((_req, _body, json) => {
      posts++;
      json(429, { error: { code: "quota_exceeded", message: "You have 5 active jobs (the limit is 5)" } }, { "retry-after": "60" });
    });
    const err = await uploadAndCreateJob({ api: apiClient(url, "token"), url, env: parseCliEnv({ XDG_CONFIG_HOME: dir }), progress: quiet, sleep: async () => {} }, await statFiles([path]), 2).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "quota_exceeded" });
    expect(posts).toBe(1);
  });
});

describe("CLI multipart upload", () => {
  it("starts a large file's upload once when the first answer is lost: the retry carries the same Idempotency-Key", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "big.mp4");
    await writeFile(path, Buffer.alloc(64 * 1024, 7));
    const keys: (string | undefined)[] = [];
    const opened = new Map<string, string>();
    // A server that keeps its promise like the edge: one upload per key. Its first answer to a start is lost.
    const url = await standInEdge((req, body, json) => {
      if (req.method === "POST" && req.url === "/api/uploads") {
        const key = req.headers["idempotency-key"] as string | undefined;
        keys.push(key);
        if (!opened.has(key ?? "")) opened.set(key ?? "", `u${opened.size + 1}`);
        if (keys.length === 1) return req.socket.destroy();
        return json(201, { id: opened.get(key ?? ""), partSize: 64 * 1024, partCount: 1 });
      }
      if (req.method === "PUT" && req.url?.startsWith("/api/uploads/")) return json(200, { partNumber: 1, etag: "e1" });
      if (req.method === "POST" && req.url?.endsWith("/complete")) return json(200, { id: "u1", size: 64 * 1024 });
      if (req.method === "POST" && req.url === "/api/jobs") return json(202, { id: "j1", uploads: JSON.parse(body.toString()).uploads });
      json(404, { error: { code: "not_found", message: "no" } });
    });

    const { job, uploads } = await uploadAndCreateJob(
      { api: apiClient(url, "token"), url, env: parseCliEnv({ XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_MULTIPART_BYTES: "1" }), progress: quiet, sleep: async () => {} },
      await statFiles([path]),
      1,
    );

    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[\x21-\x7e]{16,}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(opened.size).toBe(1);
    expect(uploads.map((u) => u.uploadId)).toEqual(["u1"]);
    expect(job).toMatchObject({ id: "j1", uploads: ["u1"] });
  });

  it("uploads a file again when the upload an earlier run recorded already fed a job (or is gone), instead of being refused for good", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "big.mp4");
    await writeFile(path, Buffer.alloc(64 * 1024, 7));
    const requests: string[] = [];
    let opened = 0;
    // The edge: upload u1 was made into job "earlier" by a run that was interrupted before it saw the answer.
    const url = await standInEdge((req, body, json) => {
      requests.push(`${req.method} ${req.url}`);
      if (req.method === "POST" && req.url === "/api/uploads") return json(201, { id: `u${++opened + 1}`, partSize: 64 * 1024, partCount: 1 });
      if (req.method === "PUT" && req.url?.startsWith("/api/uploads/")) return json(200, { partNumber: 1, etag: "e1" });
      if (req.method === "POST" && req.url?.endsWith("/complete")) return json(200, { size: 64 * 1024 });
      if (req.method === "POST" && req.url === "/api/jobs") {
        const ups = JSON.parse(body.toString()).uploads as string[];
        if (ups.includes("u1")) return json(409, { error: { code: "upload_used", message: "Upload u1 was already used by a job" }, jobId: "earlier" });
        return json(202, { id: "j2", uploads: ups });
      }
      json(404, { error: { code: "not_found", message: "no" } });
    });
    const files = await statFiles([path]);
    const env = parseCliEnv({ XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_MULTIPART_BYTES: "1" });
    await seedCompletedUpload(env, url, files[0]!);
    const logged: string[] = [];

    const { job, uploads } = await uploadAndCreateJob(
      { api: apiClient(url, "token"), url, env, progress: { ...quiet, log: (l) => logged.push(l) }, sleep: async () => {} },
      files,
      1,
    );

    expect(job).toMatchObject({ id: "j2", uploads: ["u2"] });
    expect(uploads.map((u) => u.uploadId)).toEqual(["u2"]);
    expect(requests.filter((r) => r === "POST /api/jobs")).toHaveLength(2);
    expect(logged.join("\n")).toMatch(/it fed job earlier/);
    expect((await UploadState.load(env)).get(url, files[0]!)).toBeUndefined();
  });
});

describe("CLI multipart upload of a file that changes while it is sent", () => {
  it("fails with file_changed (exit 1) when the file grew, instead of completing an upload cut at the first size", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "big.mp4");
    await writeFile(path, Buffer.alloc(128 * 1024, 7));
    const requests: string[] = [];
    // The edge; while part 1 is on its way, whatever writes the file appends to it (a recording still running).
    const url = await standInEdge(async (req, body, json, res) => {
      requests.push(`${req.method} ${req.url}`);
      if (req.method === "POST" && req.url === "/api/uploads") return json(201, { id: "u1", partSize: 64 * 1024, partCount: 2 });
      if (req.method === "PUT" && req.url === "/api/uploads/u1/parts/1") {
        await appendFile(path, Buffer.alloc(64 * 1024, 8));
        return json(200, { etag: "e1" });
      }
      if (req.method === "PUT") return json(200, { etag: "e2" });
      if (req.method === "POST" && req.url?.endsWith("/complete")) return json(200, { id: "u1", filename: "big.mp4", size: 128 * 1024, status: "completed" });
      if (req.method === "DELETE") return res.writeHead(204).end();
      if (req.method === "POST" && req.url === "/api/jobs") return json(202, { id: "j1" });
      json(404, { error: { code: "not_found", message: "no" } });
    });
    const env = parseCliEnv({ XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_MULTIPART_BYTES: "1", VIDEO_REFRESHER_PART_CONCURRENCY: "1" });
    const files = await statFiles([path]);

    const err = await uploadAndCreateJob({ api: apiClient(url, "token"), url, env, progress: quiet, sleep: async () => {} }, files, 1).then(
      () => null,
      (e: unknown) => e,
    );

    expect(err).toMatchObject({ code: "file_changed", exitCode: EXIT.failed, message: "big.mp4 changed while it was being sent" });
    expect(requests).not.toContain("POST /api/uploads/u1/complete");
    expect(requests).not.toContain("POST /api/jobs");
    // The half-sent upload is dropped rather than left holding storage for a day.
    expect(requests).toContain("DELETE /api/uploads/u1");
  });
});

describe("CLI multipart upload: completing it", () => {
  /** A stand-in edge for one 1-part upload whose answers to complete the test scripts (then 200). */
  async function completeEdge(completeAnswers: (number | { status: number; code: string })[]) {
    const requests: string[] = [];
    let opened = 0;
    let completed = false;
    const url = await standInEdge((req, _body, json) => {
      requests.push(`${req.method} ${req.url}`);
      if (req.method === "POST" && req.url === "/api/uploads") return json(201, { id: `u${++opened}`, partSize: 64 * 1024, partCount: 1 });
      if (req.method === "PUT") return json(200, { etag: "e1" });
      if (req.method === "POST" && req.url?.endsWith("/complete")) {
        const next = completeAnswers.shift();
        if (next === undefined) {
          completed = true;
          return json(200, { id: "u1", filename: "big.mp4", size: 64 * 1024, status: "completed" });
        }
        const { status, code } = typeof next === "number" ? { status: next, code: "storage_unavailable" } : next;
        return json(status, { error: { code, message: `complete refused: ${code}` } });
      }
      if (req.method === "POST" && req.url === "/api/jobs") {
        return completed ? json(202, { id: "j1" }) : json(409, { error: { code: "upload_incomplete", message: "Upload u1 is not complete yet" } });
      }
      json(404, { error: { code: "not_found", message: "no" } });
    });
    return { url, requests };
  }

  async function bigFile() {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "big.mp4");
    await writeFile(path, Buffer.alloc(64 * 1024, 7));
    return { dir, path, env: parseCliEnv({ XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_MULTIPART_BYTES: "1" }) };
  }

  it("sends complete again after 5xx answers (it is safe to repeat), instead of failing the submit", async () => {
    const { path, env } = await bigFile();
    const edge = await completeEdge([503, 502]);
    const { job } = await uploadAndCreateJob(
      { api: apiClient(edge.url, "token"), url: edge.url, env, progress: quiet, sleep: async () => {} },
      await statFiles([path]),
      1,
    );
    expect(job).toMatchObject({ id: "j1" });
    expect(edge.requests.filter((r) => r === "POST /api/uploads/u1/complete")).toHaveLength(3);
  });

  it("does not take a part_mismatch for done: the run fails, and the next run sends the parts again and completes", async () => {
    const { path, env } = await bigFile();
    const edge = await completeEdge([{ status: 409, code: "part_mismatch" }]);
    const deps = { api: apiClient(edge.url, "token"), url: edge.url, env, progress: quiet, sleep: async () => {} };
    const files = await statFiles([path]);

    const err = await uploadAndCreateJob(deps, files, 1).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: "part_mismatch", status: 409 });
    expect(edge.requests).not.toContain("POST /api/jobs");

    const { job } = await uploadAndCreateJob(deps, files, 1);
    expect(job).toMatchObject({ id: "j1" });
    expect(edge.requests.filter((r) => r === "PUT /api/uploads/u1/parts/1")).toHaveLength(2);
  });
});

describe("CLI multipart upload sent again after an earlier run's upload was used", () => {
  it("creates the job under the submit's saved key, so a re-run after a lost answer gets that job instead of a second", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "big.mp4");
    await writeFile(path, Buffer.alloc(64 * 1024, 7));
    // The edge's promises: one job per key (a repeat is answered with it), each upload feeds one job.
    const jobsByKey = new Map<string, string>();
    const usedBy = new Map<string, string>([["u1", "earlier"]]);
    let opened = 1;
    let dropJobAnswers = false;
    const url = await standInEdge((req, body, json) => {
      if (req.method === "POST" && req.url === "/api/uploads") return json(201, { id: `u${++opened}`, partSize: 64 * 1024, partCount: 1 });
      if (req.method === "PUT") return json(200, { etag: "e1" });
      if (req.method === "POST" && req.url?.endsWith("/complete")) return json(200, { status: "completed" });
      if (req.method === "POST" && req.url === "/api/jobs") {
        const key = req.headers["idempotency-key"] as string;
        const ups = JSON.parse(body.toString()).uploads as string[];
        const known = jobsByKey.get(key);
        const used = ups.find((u) => usedBy.has(u));
        if (!known && used) return json(409, { error: { code: "upload_used", message: `Upload ${used} was already used by a job` }, jobId: usedBy.get(used) });
        const id = known ?? `j${jobsByKey.size + 1}`;
        jobsByKey.set(key, id);
        for (const u of ups) usedBy.set(u, id);
        // The job is made (or found), but the answer never arrives.
        if (dropJobAnswers) return req.socket.destroy();
        return json(202, { id, uploads: ups }, known ? { "idempotent-replayed": "true" } : {});
      }
      json(404, { error: { code: "not_found", message: "no" } });
    });
    const files = await statFiles([path]);
    const env = parseCliEnv({ XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_MULTIPART_BYTES: "1" });
    // u1 fed job "earlier", made by a submit of other options.
    await seedCompletedUpload(env, url, files[0]!);
    const deps = { api: apiClient(url, "token"), url, env, progress: quiet, sleep: async () => {} };

    dropJobAnswers = true;
    const lost = await uploadAndCreateJob(deps, files, 1).then(() => null, (e: unknown) => e);
    expect(lost).toMatchObject({ exitCode: EXIT.network });
    dropJobAnswers = false;
    const { job } = await uploadAndCreateJob(deps, files, 1);

    expect(job.id).toBe("j1");
    expect([...jobsByKey.values()]).toEqual(["j1"]);
  });
});

describe("CLI submit whose earlier run's answer was lost", () => {
  /** A form edge that answers every job POST with job "j-old", as a replay when the key is the one it knows. */
  async function replayingEdge(knownKey: string) {
    const keys: string[] = [];
    const url = await standInEdge((req, body, json, res) => {
      const key = req.headers["idempotency-key"] as string;
      keys.push(key);
      const replay = key === knownKey;
      res
        .writeHead(202, { "content-type": "application/json", ...(replay ? { "idempotent-replayed": "true" } : {}) })
        .end(JSON.stringify({ id: replay ? "j-old" : "j-new", status: "queued", createdAt: "2031-01-02T03:04:05.000Z" }));
    });
    return { url, keys };
  }

  async function leftKey(ageMs: number) {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "clip.mp4");
    await writeFile(path, Buffer.alloc(1024, 7));
    const edge = await replayingEdge("k-left");
    const files = await statFiles([path]);
    // What the interrupted run left in submits.json (an ended process's key).
    await mkdir(join(dir, "video-refresher"), { recursive: true });
    await writeFile(
      join(dir, "video-refresher", "submits.json"),
      JSON.stringify({ [submitFingerprint(edge.url, files, 2, undefined)]: { key: "k-left", pid: 2 ** 30, createdAt: Date.now() - ageMs } }),
    );
    return { edge, files, env: parseCliEnv({ XDG_CONFIG_HOME: dir }) };
  }

  it("says on stderr that the job is the earlier run's, naming when it was created", async () => {
    const { edge, files, env } = await leftKey(2 * 3600_000);
    const logged: string[] = [];
    const { job } = await uploadAndCreateJob(
      { api: apiClient(edge.url, "token"), url: edge.url, env, progress: { ...quiet, log: (l) => logged.push(l) }, sleep: async () => {} },
      files,
      2,
    );
    expect([job.id, edge.keys]).toEqual(["j-old", ["k-left"]]);
    expect(logged.join("\n")).toMatch(/job j-old was created at 2031-01-02T03:04:05\.000Z by an earlier try of this submit whose answer was lost/);
  });

  it("does not reuse a key left more than a day ago: the same command then makes a new job", async () => {
    const { edge, files, env } = await leftKey(25 * 3600_000);
    const { job } = await uploadAndCreateJob({ api: apiClient(edge.url, "token"), url: edge.url, env, progress: quiet, sleep: async () => {} }, files, 2);
    expect(job.id).toBe("j-new");
    expect(edge.keys).toHaveLength(1);
    expect(edge.keys[0]).not.toBe("k-left");
  });

  it("says nothing when the job is the one this run's own lost try made: that is the job asked for", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "clip.mp4");
    await writeFile(path, Buffer.alloc(1024, 7));
    const keys: string[] = [];
    // The first try's job is made but its answer never arrives; the retry, same key, is answered with that job.
    const url = await standInEdge((req, _body, json) => {
      keys.push(req.headers["idempotency-key"] as string);
      if (keys.length === 1) return req.socket.destroy();
      json(202, { id: "j-1", status: "queued", createdAt: "2031-01-02T03:04:05.000Z" }, { "idempotent-replayed": "true" });
    });
    const logged: string[] = [];
    const { job } = await uploadAndCreateJob(
      { api: apiClient(url, "token"), url, env: parseCliEnv({ XDG_CONFIG_HOME: dir }), progress: { ...quiet, log: (l) => logged.push(l) }, sleep: async () => {} },
      await statFiles([path]),
      2,
    );
    expect(job.id).toBe("j-1");
    expect(keys).toHaveLength(2);
    expect(keys[1]).toBe(keys[0]);
    expect(logged.join("\n")).not.toMatch(/earlier try/);
  });
});

describe("CLI submits running side by side", () => {
  it("keep each other's upload records: a run that failed beside a longer one resumes without sending its file again", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-upload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const long = join(dir, "long.mp4");
    const short = join(dir, "short.mp4");
    await writeFile(long, Buffer.alloc(128 * 1024, 7));
    await writeFile(short, Buffer.alloc(64 * 1024, 8));
    // A lock a crashed run left behind (its process is gone) must not hold anyone up.
    await mkdir(join(dir, "video-refresher"), { recursive: true });
    await writeFile(join(dir, "video-refresher", "uploads.json.lock"), JSON.stringify({ pid: 2 ** 30, host: hostname() }));
    const requests: string[] = [];
    let releaseLongPart2!: () => void;
    const longPart2Held = new Promise<void>((r) => (releaseLongPart2 = r));
    let longPart2Arrived!: () => void;
    const longPart2Seen = new Promise<void>((r) => (longPart2Arrived = r));
    let shortJobRefused = true;
    const url = await standInEdge(async (req, raw, json) => {
      requests.push(`${req.method} ${req.url}`);
      const body = req.method === "POST" && raw.length ? JSON.parse(raw.toString()) : {};
      if (req.method === "POST" && req.url === "/api/uploads") {
        return body.filename === "long.mp4"
          ? json(201, { id: "u-long", partSize: 64 * 1024, partCount: 2 })
          : json(201, { id: "u-short", partSize: 64 * 1024, partCount: 1 });
      }
      if (req.method === "PUT" && req.url === "/api/uploads/u-long/parts/2") {
        longPart2Arrived();
        await longPart2Held;
      }
      if (req.method === "PUT") return json(200, { etag: "e" });
      if (req.method === "POST" && req.url?.endsWith("/complete")) return json(200, { status: "completed" });
      if (req.method === "POST" && req.url === "/api/jobs") {
        if (body.uploads.includes("u-short") && shortJobRefused) return json(503, { error: { code: "db_unavailable", message: "The database is unavailable" } });
        return json(202, { id: `job-of-${body.uploads[0]}` });
      }
      json(404, { error: { code: "not_found", message: "no" } });
    });
    // Run first: a test that failed half-way must not leave the held part keeping the server open.
    cleanups.push(async () => releaseLongPart2());
    const deps = {
      api: apiClient(url, "token"),
      url,
      env: parseCliEnv({ XDG_CONFIG_HOME: dir, VIDEO_REFRESHER_MULTIPART_BYTES: "1", VIDEO_REFRESHER_PART_CONCURRENCY: "1" }),
      progress: quiet,
      sleep: async () => {},
    };

    // The long run has read uploads.json and stored part 1; while its part 2 is on the way, the short run uploads its
    // file and fails at the job (the database is down): its completed upload is what its re-run needs.
    const longRun = uploadAndCreateJob(deps, await statFiles([long]), 1);
    await longPart2Seen;
    const shortFailed = await uploadAndCreateJob(deps, await statFiles([short]), 1).then(() => null, (e: unknown) => e);
    expect(shortFailed).toMatchObject({ status: 503 });
    releaseLongPart2();
    expect((await longRun).job.id).toBe("job-of-u-long");

    shortJobRefused = false;
    const before = requests.length;
    const again = await uploadAndCreateJob(deps, await statFiles([short]), 1);
    expect(again.job.id).toBe("job-of-u-short");
    expect(requests.slice(before)).toEqual(["POST /api/jobs"]);
  });
});
