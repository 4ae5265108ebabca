import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient } from "../../cli/client";
import { CliError, EXIT } from "../../cli/errors";
import type { Progress } from "../../cli/progress";
import { watchJob } from "../../cli/watch";

/** A stand-in edge: each GET /api/jobs/:id answers the next scripted status ("reset" drops the connection). */
let server: Server;
let url: string;
let script: (number | "reset" | { status: string })[] = [];
let polls = 0;

const job = (status: string) => ({
  id: "job-1", status, progress: 0, files: [], variationsPerVideo: 1, completedVariations: 0, totalVariations: 1,
  failedVariations: 0, cancelledVariations: 0,
});

beforeAll(async () => {
  server = createServer((req, res) => {
    polls++;
    const next = script.shift() ?? { status: "completed" };
    if (next === "reset") return void req.socket.destroy();
    if (typeof next === "number") {
      res.writeHead(next, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ error: { code: next === 404 ? "not_found" : "unavailable", message: `HTTP ${next}` } }));
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(job(next.status)));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const lines: string[] = [];
const progress: Progress = {
  bar: () => ({ update() {}, increment() {}, setTotal() {} }),
  log: (l) => lines.push(l),
  stop() {},
};
const noSleep = async () => {};

describe("watching a job (submit --wait, status --watch)", () => {
  it("rides out an edge outage — 503s, a dropped connection, a 429 — and returns the job once it is readable again", async () => {
    script = [{ status: "processing" }, 503, "reset", 429, 502, { status: "processing" }, 503, { status: "completed" }];
    polls = 0;
    const api = apiClient(url, "t");
    const done = await watchJob(api, url, "job-1", progress, { intervalMs: 1, sleep: noSleep });
    expect(done.status).toBe("completed");
    expect(polls).toBe(8);
    expect(lines.some((l) => /polling again/.test(l))).toBe(true);
  });

  it("gives up after the outage allowance, or at once on an answer no retry changes, naming the job that goes on", async () => {
    script = [{ status: "processing" }, 503];
    const api = apiClient(url, "t");
    const outage = await watchJob(api, url, "job-1", progress, { intervalMs: 1, sleep: noSleep, outageMs: 0 }).catch((e: unknown) => e);
    expect(outage).toBeInstanceOf(CliError);
    expect(outage).toMatchObject({ exitCode: EXIT.failed, status: 503, extra: { jobId: "job-1" } });
    expect((outage as Error).message).toMatch(/job job-1 goes on on the server/);

    script = [404];
    polls = 0;
    const gone = await watchJob(api, url, "job-1", progress, { intervalMs: 1, sleep: noSleep }).catch((e: unknown) => e);
    expect(gone).toMatchObject({ code: "not_found", extra: { jobId: "job-1" } });
    expect(polls).toBe(1);
  });
});
