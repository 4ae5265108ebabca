// Webhooks end to end on the real stack: wrangler dev (workerd, miniflare Queue), the local libSQL server, a
// receiver on 127.0.0.1 that verifies every signature with the standardwebhooks package. Job transitions are made
// through the API (the edge's own) or by the runner's db/ queries straight against libSQL (what a runner does).
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { and, eq, isNotNull } from "drizzle-orm";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../db/client";
import { claimVariations, failVariation, finishVariation } from "../../db/queries/variations";
import { webhookDeliveries } from "../../db/schema";
import { signInToEdge, type ApiSession } from "../helpers/api";
import { until } from "../helpers/until";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";
import { freshDb, seedJob } from "../helpers/seed";
import { freePort } from "../helpers/ports";
import { testEdgeConfig } from "../helpers/wrangler";
import { stopProcessGroup } from "../../runner/process-group";
import { liveGroupMembers } from "../../scripts/stack";

const RUNNER_TOKEN = "webhooks-stack-runner-token-0123456789";

interface Received {
  id: string;
  payload: { type: string; timestamp: string; data: { id: string; status: string } };
}

/** A webhook endpoint: answers `mode` (200, 503) or is not listening at all ("down"); keeps every verified event. */
class Receiver {
  server: Server | null = null;
  port = 0;
  mode: 200 | 503 = 200;
  secret = "";
  received: Received[] = [];
  refused = 0;
  badSignatures = 0;

  async listen(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        if (this.mode !== 200) {
          this.refused++;
          res.writeHead(this.mode).end();
          return;
        }
        try {
          const payload = new Webhook(this.secret).verify(body, req.headers as Record<string, string>) as Received["payload"];
          this.received.push({ id: String(req.headers["webhook-id"]), payload });
          res.writeHead(204).end();
        } catch {
          this.badSignatures++;
          res.writeHead(400).end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  of(jobId: string, type: string): Received[] {
    return this.received.filter((r) => r.payload.data.id === jobId && r.payload.type === type);
  }
}

let server: TestLibsqlServer;
let db: Db;
let libsqlUrl: string;
let edge: Edge;
let persistTo: string;
let user: ApiSession;
let webhookId: string;
let cron: NodeJS.Timeout | undefined;
const receiver = new Receiver();

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Edge {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * `wrangler dev` on `port` (default a free one; a restart keeps it, so the signed-in session's URL stays valid)
 * with this file's config, persisting under persistTo (kept across a restart). close() stops wrangler's process
 * group and returns once every member is gone: wrangler can exit before its workerd, so "the edge is down" holds
 * when the caller's next line runs.
 */
async function startEdge(port?: number): Promise<Edge> {
  const p = port ?? (await freePort());
  const vars = { LIBSQL_URL: libsqlUrl, RUNNER_TOKEN, WEBHOOKS_ALLOW_LOCAL_HTTP: "1" };
  const args = [
    "dev", "--config", await testEdgeConfig(persistTo), "--ip", "127.0.0.1", "--port", String(p),
    "--inspector-port", "0", // OS-chosen: see startWranglerDev
    "--persist-to", join(persistTo, "state"), "--test-scheduled", "--show-interactive-dev-session=false", "--log-level", "warn",
    ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
  const child = spawn(join(ROOT, "node_modules/.bin/wrangler"), args, {
    cwd: ROOT,
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (d) => (output = (output + d).slice(-20_000)));
  child.stderr!.on("data", (d) => (output = (output + d).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) await stopProcessGroup(child.pid!, exited, 5_000);
    for (let i = 0; liveGroupMembers(child.pid!).length > 0; i++) {
      if (i === 50) process.kill(-child.pid!, "SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const url = `http://127.0.0.1:${p}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early (${child.exitCode}):\n${output}`);
    const ok = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.status === 200, () => false);
    if (ok) return { url, port: p, close };
    if (Date.now() > deadline) {
      await close();
      throw new Error(`wrangler dev did not become healthy in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** What the launcher does every CRON_EVERY_MS: the lifecycle, a sweep of the outbox, sweeps every 5 s for a minute. */
const fireCron = () => fetch(`${edge.url}/__scheduled?cron=${encodeURIComponent("* * * * *")}`).then((r) => r.text());

beforeAll(async () => {
  persistTo = await mkdtemp(join(tmpdir(), "vr-webhooks-"));
  server = await startTestLibsql();
  ({ db, url: libsqlUrl } = await freshDb(server, "webhooks"));
  edge = await startEdge();
  user = await signInToEdge(edge.url, db);
  await receiver.listen();
  const res = await user.call("/api/webhooks", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: `http://127.0.0.1:${receiver.port}/hook` }),
  });
  expect(res.status).toBe(201);
  const created = (await res.json()) as { id: string; secret: string };
  webhookId = created.id;
  receiver.secret = created.secret;
  // Like the launcher (CRON_EVERY_MS) and production (every minute), slower than the 5-s sweeps each tick schedules;
  // the tests also fire it right after a transition, so no wait depends on this interval.
  cron = setInterval(() => void fireCron().catch(() => {}), 30_000);
}, 120_000);

afterAll(async () => {
  clearInterval(cron);
  await edge?.close();
  await receiver.down();
  await server?.close();
  if (persistTo) await rm(persistTo, { recursive: true, force: true });
});

/** A queued one-variation job of the test user, seeded like POST /api/jobs leaves it. */
async function queuedJob(): Promise<string> {
  return (await seedJob(db, { userId: user.userId, sources: [{ objectKey: "sources/x/y" }] })).jobId;
}

/** The runner's path: claim (one round trip) and settle with the job's finalize in the same batch, against libSQL. */
async function runnerSettles(jobId: string, outcome: "finish" | "fail"): Promise<void> {
  const { claimed } = await claimVariations(db, { runnerId: "webhook-test-runner", leaseMs: 60_000, now: Date.now(), limit: 1 });
  const v = claimed.find((c) => c.jobId === jobId);
  expect(v, "the test job's variation was claimed").toBeTruthy();
  const own = { variationId: v!.id, runnerId: "webhook-test-runner", attempt: v!.attempt, now: Date.now() };
  if (outcome === "finish") expect(await finishVariation(db, { ...own, outputKey: `outputs/${jobId}/${v!.id}.mp4`, outputSize: 10 })).toBe(true);
  else expect(await failVariation(db, { ...own, error: "test failure" })).toBe(true);
}

async function deliveryOf(jobId: string, event: string) {
  const rows = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.jobId, jobId));
  return rows.find((r) => r.event === event);
}

async function expectDeliveredOnce(jobId: string, type: string) {
  const got = await until(`${type} for ${jobId} at the receiver`, async () => receiver.of(jobId, type).length > 0 && receiver.of(jobId, type), 90_000, 200);
  const row = await until(`${type} for ${jobId} recorded delivered`, async () => {
    const r = await deliveryOf(jobId, type);
    return r?.status === "delivered" && r;
  }, 30_000, 200);
  // One attempt recorded and one arrival: claimDelivery counts every send, and a delivered row is never sent again.
  expect(row.attempts).toBe(1);
  expect(got).toHaveLength(1);
  expect(got[0]!.id).toBe(row.id);
  expect(got[0]!.payload.data).toEqual(await user.getJob(jobId));
}

describe("webhooks on the real stack", () => {
  it("a job cancelled through the API is delivered once, signed, with the job as GET /api/jobs/:id shows it", async () => {
    const jobId = await queuedJob();
    expect((await user.call(`/api/jobs/${jobId}/cancel`, { method: "POST" })).status).toBe(200);
    await expectDeliveredOnce(jobId, "job.cancelled");
    expect(receiver.badSignatures).toBe(0);
  });

  it("a job paused through the API is delivered once", async () => {
    const jobId = await queuedJob();
    expect((await user.call(`/api/jobs/${jobId}/pause`, { method: "POST" })).status).toBe(200);
    await expectDeliveredOnce(jobId, "job.paused");
  });

  it("jobs a runner completes or fails (written straight to libSQL) are delivered once each by the sweep", async () => {
    const completed = await queuedJob();
    await runnerSettles(completed, "finish");
    const failed = await queuedJob();
    await runnerSettles(failed, "fail");
    await fireCron();
    await expectDeliveredOnce(completed, "job.completed");
    await expectDeliveredOnce(failed, "job.failed");
    const log = (await (await user.call(`/api/webhooks/${webhookId}/deliveries`)).json()) as { deliveries: { jobId: string; status: string; lastStatusCode: number }[] };
    expect(log.deliveries.find((d) => d.jobId === completed)).toMatchObject({ status: "delivered", lastStatusCode: 204 });
  });

  it("a receiver answering 503, then not listening at all, gets the event after it comes back", async () => {
    receiver.mode = 503;
    const jobId = await queuedJob();
    await runnerSettles(jobId, "finish");
    await fireCron();
    await until("a refused attempt", async () => receiver.refused > 0, 90_000, 200);
    await receiver.down();
    await until("an attempt against the closed port", async () => {
      const r = await deliveryOf(jobId, "job.completed");
      return r && r.attempts >= 2 && r.lastStatusCode === null && r.lastError?.startsWith("connection failed") && r;
    }, 90_000, 200);
    receiver.mode = 200;
    await receiver.listen();
    await fireCron();
    // Backoff 5, 10, 20, 40 s…: a loaded machine can push the first attempt after the return to the 40-s step.
    const got = await until("delivery after the receiver came back", async () => receiver.of(jobId, "job.completed").length > 0 && receiver.of(jobId, "job.completed"), 200_000, 200);
    expect(got).toHaveLength(1);
    // The receiver sees the POST before the edge has read its 204 and recorded it: wait for the record, never
    // read it once (that read races the edge's write), and never leave a send in flight for the next test.
    const row = await until("the delivery recorded", async () => {
      const r = await deliveryOf(jobId, "job.completed");
      return r?.status === "delivered" && r;
    }, 30_000, 200);
    expect(row).toMatchObject({ status: "delivered", lastStatusCode: 204 });
    expect(row.attempts).toBeGreaterThanOrEqual(3);
  }, 360_000);

  it("a transition committed while the edge is down is delivered after it restarts", async () => {
    const jobId = await queuedJob();
    // Nothing in flight when the edge stops: a send cut off between claim and record keeps its row leased (and
    // resent) for a minute, which is the product's at-least-once, not what this test is about.
    await until("no delivery in flight", async () => {
      const held = await db.select({ id: webhookDeliveries.id }).from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.status, "pending"), isNotNull(webhookDeliveries.leaseUntil)));
      return held.length === 0;
    }, 90_000, 200);
    await edge.close();
    await runnerSettles(jobId, "finish");
    expect(await deliveryOf(jobId, "job.completed")).toMatchObject({ status: "pending", attempts: 0 });
    edge = await startEdge(edge.port);
    await fireCron();
    await expectDeliveredOnce(jobId, "job.completed");
  });

  it("test events and redeliveries reach the receiver with the same webhook-id", async () => {
    const res = await user.call(`/api/webhooks/${webhookId}/test`, { method: "POST" });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await until("the test event", async () => receiver.received.some((r) => r.id === id), 60_000, 200);
    // Redeliver takes a settled delivery only (409 delivery_pending before): the receiver has the POST before the
    // edge has recorded its 204, so wait for the record instead of racing it.
    await until("the test event recorded delivered", async () => {
      const [r] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
      return r?.status === "delivered";
    }, 30_000, 200);
    const again = await user.call(`/api/webhooks/${webhookId}/deliveries/${id}/redeliver`, { method: "POST" });
    expect(again.status).toBe(202);
    await until("the redelivery", async () => receiver.received.filter((r) => r.id === id).length === 2, 60_000, 200);
    expect(receiver.received.filter((r) => r.id === id).map((r) => r.payload.type)).toEqual(["webhook.test", "webhook.test"]);
  });
});
