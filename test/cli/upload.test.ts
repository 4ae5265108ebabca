import { createServer, type Server } from "node:http";
import { appendFile, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { apiClient } from "../../cli/client";
import { CliError, EXIT } from "../../cli/errors";
import type { Progress } from "../../cli/progress";
import { statFiles, uploadAndCreateJob } from "../../cli/upload";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet: Progress = { bar: () => ({ update() {}, increment() {}, setTotal() {} }), log() {}, stop() {} };

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
      { api: apiClient(server.url, "token"), url: server.url, env: { XDG_CONFIG_HOME: dir }, progress: quiet, sleep: async () => {} },
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
      { api: apiClient(server.url, "token"), url: server.url, env: { XDG_CONFIG_HOME: dir }, progress: quiet, sleep: async () => {} },
      files,
      2,
    ).then(() => null, (e: unknown) => e);

    expect(err).toMatchObject({ code: "file_changed", exitCode: EXIT.failed });
    expect(server.posts()).toBe(1);
  });
});
