import { and, eq, inArray, sql } from "drizzle-orm";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { pauseJob, requestCancel } from "../../db/queries/jobs";
import { failVariation, finishVariation } from "../../db/queries/variations";
import { newId } from "../../db/ids";
import { webhookDeliveries } from "../../db/schema";
import { ENQUEUE_HOLD_MS, MANUAL_SEND_PENDING_LIMIT, pruneDeliveries, takeDueDeliveries } from "../../db/queries/webhooks";
import { deliverOnce, MAX_DELIVERY_ATTEMPTS } from "../../edge/lib/webhooks/deliver";
import { consumeWebhookBatch, enqueueDueDeliveries, MAX_CONCURRENT_MESSAGES, sweepWebhookDeliveries, type WebhookMessage } from "../../edge/lib/webhooks/queue";
import { ConfigSchema } from "../../edge/env";
import { claimAll, db, ORIGIN, seedJob, signIn, type Session } from "./helpers";

const HOOK = "https://hooks.example.com/video-refresher";
const HOUR = 3_600_000;

async function createHook(s: Session, body: Record<string, unknown> = { url: HOOK }) {
  const res = await s.call("/api/webhooks", { method: "POST", json: body });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; url: string; events: string[]; secret: string; createdAt: string };
}

async function deliveriesOf(webhookId: string) {
  return db.select().from(webhookDeliveries).where(eq(webhookDeliveries.webhookId, webhookId));
}

/** Captures what deliverOnce POSTs, answering with `status`. */
function receiver(statuses: number[]) {
  const seen: { url: string; headers: Record<string, string>; body: string }[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    seen.push({ url, headers: Object.fromEntries(new Headers(init.headers).entries()), body: String(init.body) });
    return new Response(null, { status: statuses[Math.min(seen.length - 1, statuses.length - 1)] });
  }) as unknown as typeof globalThis.fetch;
  return { seen, fetch };
}

describe("POST/GET/DELETE /api/webhooks", () => {
  it("creates a webhook with every event by default and shows its secret only once", async () => {
    const s = await signIn();
    const created = await createHook(s);
    expect(created.secret).toMatch(/^whsec_/);
    expect(created.events).toEqual(["job.completed", "job.cancelled", "job.failed", "job.paused"]);
    const list = (await (await s.call("/api/webhooks")).json()) as { webhooks: Record<string, unknown>[] };
    expect(list.webhooks).toEqual([{ id: created.id, url: HOOK, events: created.events, createdAt: created.createdAt }]);
    expect(JSON.stringify(list)).not.toContain("whsec_");
  });

  it("refuses private, loopback and plain-http endpoints in production mode with a clear code", async () => {
    const s = await signIn();
    for (const url of [
      "https://127.0.0.1/hook", "https://10.0.0.5/", "https://169.254.169.254/", "https://[::1]/", "https://localhost/", "http://hooks.example.com/",
      // Other spellings of the same addresses: decimal/octal/hex IPv4, IPv4-mapped IPv6, trailing dots (one or more).
      "https://2130706433/", "https://0x7f.1/", "https://0177.0.0.1/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:a9fe:a9fe]/",
      "https://127.0.0.1./", "https://localhost./", "https://localhost../", "https://10.0.0.1../", "https://127.0.0.1%2E%2E/",
      "https://169.254.169.254.../", "https://hooks..example.com/",
    ]) {
      const res = await s.call("/api/webhooks", { method: "POST", json: { url } });
      expect(res.status, url).toBe(400);
      expect(await res.json(), url).toMatchObject({ error: { code: "webhook_url_not_allowed", field: "url" } });
    }
    for (const url of ["https://a@127.0.0.1/", "https://user:pass@hooks.example.com/"]) {
      const res = await s.call("/api/webhooks", { method: "POST", json: { url } });
      expect(res.status, url).toBe(400);
      expect(await res.json(), url).toMatchObject({ error: { code: "invalid_webhook_url", field: "url" } });
    }
    const bad = await s.call("/api/webhooks", { method: "POST", json: { url: HOOK, events: ["job.exploded"] } });
    expect(bad.status).toBe(400);
  });

  it("answers 404 for another user's webhook on every route", async () => {
    const owner = await signIn();
    const other = await signIn();
    const hook = await createHook(owner);
    expect((await other.call(`/api/webhooks/${hook.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await other.call(`/api/webhooks/${hook.id}/deliveries`)).status).toBe(404);
    expect((await other.call(`/api/webhooks/${hook.id}/test`, { method: "POST" })).status).toBe(404);
    const test = (await (await owner.call(`/api/webhooks/${hook.id}/test`, { method: "POST" })).json()) as { id: string };
    expect((await other.call(`/api/webhooks/${hook.id}/deliveries/${test.id}/redeliver`, { method: "POST" })).status).toBe(404);
    expect(((await (await other.call("/api/webhooks")).json()) as { webhooks: unknown[] }).webhooks).toEqual([]);
    expect((await owner.call(`/api/webhooks/${hook.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await owner.call(`/api/webhooks/${hook.id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("checks CSRF on cookie-authenticated changes", async () => {
    const s = await signIn();
    const res = await s.call("/api/webhooks", { method: "POST", json: { url: HOOK }, origin: "https://evil.example" });
    expect(res.status).toBe(403);
    expect(ORIGIN).not.toBe("https://evil.example");
  });

  it("queues a test event that shows in the delivery log", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const res = await s.call(`/api/webhooks/${hook.id}/test`, { method: "POST" });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const log = (await (await s.call(`/api/webhooks/${hook.id}/deliveries`)).json()) as { deliveries: { id: string; event: string }[] };
    expect(log.deliveries.map((d) => [d.id, d.event])).toEqual([[id, "webhook.test"]]);
  });
});

describe("manual sends (test, redeliver) are bounded per webhook", () => {
  /** `n` deliveries of the webhook still being attempted (due in three days: no consumer touches them meanwhile). */
  async function pendingBacklog(webhookId: string, n: number, status: "pending" | "failed" = "pending") {
    const at = Date.now() + 3 * 24 * HOUR;
    const rows = Array.from({ length: n }, () => ({
      id: newId(), webhookId, jobId: null, event: "webhook.test", occurredAt: at,
      status, attempts: 1, nextAttemptAt: at, payload: "{}", createdAt: at,
    }));
    await db.insert(webhookDeliveries).values(rows);
    return rows.map((r) => r.id);
  }

  it("refuses a test event with 429 too_many_pending while 10 deliveries of the webhook are pending, creating nothing", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    await pendingBacklog(hook.id, MANUAL_SEND_PENDING_LIMIT - 1);
    expect((await s.call(`/api/webhooks/${hook.id}/test`, { method: "POST" })).status).toBe(202);
    const res = await s.call(`/api/webhooks/${hook.id}/test`, { method: "POST" });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("too_many_pending");
    expect(await deliveriesOf(hook.id)).toHaveLength(MANUAL_SEND_PENDING_LIMIT);
    // Another user's webhook is not affected.
    const other = await signIn();
    expect((await other.call(`/api/webhooks/${(await createHook(other)).id}/test`, { method: "POST" })).status).toBe(202);
  });

  it("refuses a redelivery with 429 too_many_pending while 10 deliveries of the webhook are pending", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const [failed] = await pendingBacklog(hook.id, 1, "failed");
    await pendingBacklog(hook.id, MANUAL_SEND_PENDING_LIMIT);
    const res = await s.call(`/api/webhooks/${hook.id}/deliveries/${failed}/redeliver`, { method: "POST" });
    expect(res.status).toBe(429);
    expect((await deliveriesOf(hook.id)).find((d) => d.id === failed)!.status).toBe("failed");
  });
});

describe("takeDueDeliveries (the sweep)", () => {
  it("takes the oldest due delivery of every webhook before a second one of any: one user's backlog does not hold back another's event", async () => {
    const [a, b] = [await signIn(), await signIn()];
    const [hookA, hookB] = [await createHook(a), await createHook(b)];
    const now = Date.now() + 3 * 24 * HOUR;
    // User A: 150 due deliveries, all older than user B's one event.
    const backlog = Array.from({ length: 150 }, (_, i) => ({
      id: `backlog-${hookA.id}-${i}`, webhookId: hookA.id, jobId: null, event: "webhook.test", occurredAt: now - 2 * HOUR,
      status: "pending" as const, attempts: 1, nextAttemptAt: now - HOUR + i, payload: "{}", createdAt: now - 2 * HOUR,
    }));
    for (let i = 0; i < backlog.length; i += 50) await db.insert(webhookDeliveries).values(backlog.slice(i, i + 50));
    await db.insert(webhookDeliveries).values({
      id: `event-${hookB.id}`, webhookId: hookB.id, jobId: null, event: "webhook.test", occurredAt: now - 60_000,
      status: "pending", attempts: 0, nextAttemptAt: now - 60_000, payload: "{}", createdAt: now - 60_000,
    });
    const due = await takeDueDeliveries(db, now, 100);
    expect(due).toContain(`event-${hookB.id}`);
    expect(due).toContain(`backlog-${hookA.id}-0`);
    // In that order too (the queue sends the first first): every webhook's first before anyone's second.
    expect(due.indexOf(`event-${hookB.id}`)).toBeLessThan(due.indexOf(`backlog-${hookA.id}-1`));
    await db.delete(webhookDeliveries).where(sql`webhook_id IN (${hookA.id}, ${hookB.id})`);
  });

  it("takes a waiting row once: later sweeps leave it to its queued message until ENQUEUE_HOLD_MS, then take it again", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const now = Date.now() + 4 * 24 * HOUR;
    const ids = [0, 1, 2].map((i) => `waiting-${hook.id}-${i}`);
    await db.insert(webhookDeliveries).values(ids.map((id, i) => ({
      id, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: now - HOUR,
      status: "pending" as const, attempts: 0, nextAttemptAt: now - HOUR + i, payload: "{}", createdAt: now - HOUR,
    })));
    const ours = (taken: string[]) => taken.filter((id) => ids.includes(id)).sort();
    expect(ours(await takeDueDeliveries(db, now, 1000))).toEqual(ids);
    // The next sweeps (every 5 s, and after job-changing requests) find them queued already.
    expect(ours(await takeDueDeliveries(db, now + 5_000, 1000))).toEqual([]);
    expect(ours(await takeDueDeliveries(db, now + ENQUEUE_HOLD_MS - 1, 1000))).toEqual([]);
    // A message lost on the way: the row is taken again once the hold is over.
    expect(ours(await takeDueDeliveries(db, now + ENQUEUE_HOLD_MS, 1000))).toEqual(ids);
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

  it("leaves rows whose queue messages could not be sent to the next sweep, not to the end of the hold", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const now = Date.now() + 5 * 24 * HOUR;
    const id = `unsent-${hook.id}`;
    await db.insert(webhookDeliveries).values({
      id, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: now - HOUR,
      status: "pending", attempts: 0, nextAttemptAt: now - HOUR, payload: "{}", createdAt: now - HOUR,
    });
    const refusing = { sendBatch: async () => { throw new Error("queue unavailable"); } } as unknown as Queue<WebhookMessage>;
    await expect(enqueueDueDeliveries({ db, queue: refusing }, now)).rejects.toThrow("queue unavailable");
    expect(await takeDueDeliveries(db, now + 5_000, 1000)).toContain(id);
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });
});

describe("the webhook outbox (jobs_webhook_outbox trigger)", () => {
  it("writes one event per subscribed webhook when a job is cancelled, paused, completed or fails, and nothing else", async () => {
    const s = await signIn();
    const all = await createHook(s);
    const onlyCompleted = await createHook(s, { url: HOOK, events: ["job.completed"] });
    const viewer = { id: s.id, email: s.email, role: s.role };

    const cancelled = await seedJob(s.id);
    await requestCancel(db, { jobId: cancelled.id, viewer }, Date.now());
    await requestCancel(db, { jobId: cancelled.id, viewer }, Date.now()); // idempotent: no second event

    const paused = await seedJob(s.id);
    await pauseJob(db, { jobId: paused.id, viewer }, Date.now());

    const completed = await seedJob(s.id, { variations: 1 });
    const [vc] = await claimAll(completed.id, "r-wh");
    await finishVariation(db, { variationId: vc!, runnerId: "r-wh", attempt: 1, outputKey: `outputs/${completed.id}/x.mp4`, outputSize: 1, now: Date.now() });
    await finishVariation(db, { variationId: vc!, runnerId: "r-wh", attempt: 1, outputKey: `outputs/${completed.id}/x.mp4`, outputSize: 1, now: Date.now() });

    const failed = await seedJob(s.id, { variations: 1 });
    const [vf] = await claimAll(failed.id, "r-wh");
    await failVariation(db, { variationId: vf!, runnerId: "r-wh", attempt: 1, error: "boom", now: Date.now() });

    const events = (await deliveriesOf(all.id)).map((d) => `${d.event} ${d.jobId}`).sort();
    expect(events).toEqual(
      [`job.cancelled ${cancelled.id}`, `job.paused ${paused.id}`, `job.completed ${completed.id}`, `job.failed ${failed.id}`].sort(),
    );
    expect((await deliveriesOf(onlyCompleted.id)).map((d) => `${d.event} ${d.jobId}`)).toEqual([`job.completed ${completed.id}`]);
    const other = await signIn();
    const othersJob = await seedJob(other.id);
    await requestCancel(db, { jobId: othersJob.id, viewer: { id: other.id, email: other.email, role: other.role } }, Date.now());
    expect((await deliveriesOf(all.id)).some((d) => d.jobId === othersJob.id)).toBe(false);
  });
});

describe("the outbox occurrence key", () => {
  it("a replayed transition (same job, event and transition time) cannot add a second event", async () => {
    const s = await signIn();
    const hook = await createHook(s, { url: HOOK, events: ["job.failed"] });
    const job = await seedJob(s.id);
    const at = Date.now() + 5 * HOUR;
    const fail = sql`UPDATE jobs SET status = 'failed', updated_at = ${at} WHERE id = ${job.id}`;
    await db.run(fail);
    await db.run(sql`UPDATE jobs SET status = 'processing' WHERE id = ${job.id}`);
    await db.run(fail);
    expect((await deliveriesOf(hook.id)).map((d) => [d.event, d.occurredAt])).toEqual([["job.failed", at]]);
  });
});

describe("deliverOnce", () => {
  /** A cancelled job with one pending event; delivered with `now` an hour ahead so no real sweep finds it due first. */
  async function pendingEvent() {
    const s = await signIn();
    const hook = await createHook(s, { url: HOOK, events: ["job.cancelled"] });
    const job = await seedJob(s.id);
    const later = Date.now() + HOUR;
    await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, later);
    const [row] = await deliveriesOf(hook.id);
    return { s, hook, job, row: row!, later };
  }

  it("POSTs the job exactly as GET /api/jobs/:id returns it, signed so standardwebhooks verifies it", async () => {
    const { s, hook, job, row, later } = await pendingEvent();
    const r = receiver([204]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later)).toEqual({ done: true, status: "delivered" });
    expect(r.seen).toHaveLength(1);
    const sent = r.seen[0]!;
    expect(sent.url).toBe(HOOK);
    expect(sent.headers["webhook-id"]).toBe(row.id);
    const payload = new Webhook(hook.secret).verify(sent.body, sent.headers) as { type: string; timestamp: string; data: unknown };
    expect(payload.type).toBe("job.cancelled");
    expect(payload.timestamp).toBe(new Date(later).toISOString());
    expect(payload.data).toEqual(await (await s.call(`/api/jobs/${job.id}`)).json());
    // Delivered: a duplicate message sends nothing.
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later + HOUR)).toEqual({ done: true, status: "skipped" });
    expect(r.seen).toHaveLength(1);
    const log = (await (await s.call(`/api/webhooks/${hook.id}/deliveries`)).json()) as { deliveries: Record<string, unknown>[] };
    expect(log.deliveries[0]).toMatchObject({ id: row.id, status: "delivered", attempts: 1, lastStatusCode: 204, lastError: null });
  });

  it("backs off after a failed attempt, resends the same body, and redeliver starts a new series", async () => {
    const { s, hook, row, later } = await pendingEvent();
    const r = receiver([503, 200]);
    const deps = { db, policy: { allowLocalHttp: false }, fetch: r.fetch };
    const first = await deliverOnce(deps, row.id, later);
    expect(first).toMatchObject({ done: false });
    const [afterFail] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, row.id));
    expect(afterFail).toMatchObject({ status: "pending", attempts: 1, lastStatusCode: 503, lastError: "HTTP 503" });
    // Not due yet: nothing is sent.
    expect(await deliverOnce(deps, row.id, later)).toEqual({ done: true, status: "skipped" });
    expect(await deliverOnce(deps, row.id, afterFail!.nextAttemptAt)).toEqual({ done: true, status: "delivered" });
    expect(r.seen.map((x) => x.body)).toEqual([r.seen[0]!.body, r.seen[0]!.body]);
    expect(r.seen[1]!.headers["webhook-id"]).toBe(row.id);

    const pending = await s.call(`/api/webhooks/${hook.id}/deliveries/${row.id}/redeliver`, { method: "POST" });
    expect(pending.status).toBe(202);
    const [again] = await db.select().from(webhookDeliveries).where(and(eq(webhookDeliveries.id, row.id)));
    expect(again).toMatchObject({ status: "pending", attempts: 0 });
  });

  it("an attempt cut off mid-send (process died) is retried with the very bytes it sent, not the job as it is now", async () => {
    const { row, later } = await pendingEvent();
    const sent: string[] = [];
    let reached!: () => void;
    const inSend = new Promise<void>((r) => (reached = r));
    // The first send never comes back (the consumer died with it): nothing after it runs.
    const dying = (async (_url: string, init: RequestInit) => {
      sent.push(String(init.body));
      reached();
      return new Promise<Response>(() => {});
    }) as unknown as typeof fetch;
    void deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: dying }, row.id, later);
    await inSend;
    // The job moves on meanwhile (here: its cancel reason changes), then the lease runs out and the row is retried.
    await db.run(sql`UPDATE jobs SET cancel_reason = 'changed after the first attempt' WHERE id = ${row.jobId}`);
    const r = receiver([204]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later + 2 * 60_000)).toEqual({ done: true, status: "delivered" });
    expect(r.seen.map((x) => x.body)).toEqual(sent);
    expect(r.seen[0]!.headers["webhook-id"]).toBe(row.id);
  });

  it("counts no attempt and holds no lease when the body cannot be built (database error before any send)", async () => {
    const { row, later } = await pendingEvent();
    // The job read (a batch) fails; the outbox statements still work.
    const flaky = new Proxy(db, {
      get: (t, k) => (k === "batch" ? () => Promise.reject(new Error("database unavailable")) : Reflect.get(t, k)),
    }) as typeof db;
    const r = receiver([204]);
    await expect(deliverOnce({ db: flaky, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later)).rejects.toThrow("database unavailable");
    expect(r.seen).toHaveLength(0);
    const [after] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, row.id));
    expect(after).toMatchObject({ status: "pending", attempts: 0, leaseUntil: null });
    // So the queue's retry of the message (seconds later) sends it, instead of waiting out a lease.
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later + 5_000)).toEqual({ done: true, status: "delivered" });
    const [done] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, row.id));
    expect(done).toMatchObject({ status: "delivered", attempts: 1 });
  });

  it("gives up after the 24-hour series and refuses an endpoint that became disallowed", async () => {
    expect(MAX_DELIVERY_ATTEMPTS).toBeGreaterThan(10);
    const { row, later } = await pendingEvent();
    await db.update(webhookDeliveries).set({ attempts: MAX_DELIVERY_ATTEMPTS - 1 }).where(eq(webhookDeliveries.id, row.id));
    const r = receiver([500]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later)).toEqual({ done: true, status: "failed" });

    const second = await pendingEvent();
    await db.run(`UPDATE webhooks SET url = 'https://192.168.0.10/' WHERE id = '${second.hook.id}'` as never);
    const r2 = receiver([200]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r2.fetch }, second.row.id, second.later)).toEqual({ done: true, status: "failed" });
    expect(r2.seen).toHaveLength(0);
  });
});

describe("consumeWebhookBatch (queue consumer)", () => {
  it("one user's endpoint that never answers does not hold up the queue: the batch returns, the send goes on", async () => {
    const later = Date.now() + HOUR;
    const event = async (url: string) => {
      const s = await signIn();
      const hook = await createHook(s, { url, events: ["job.cancelled"] });
      const job = await seedJob(s.id);
      await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, later);
      return (await deliveriesOf(hook.id))[0]!;
    };
    const slow = await event("https://slow.example.com/hook");
    const fast = await event("https://fast.example.com/hook");
    // The slow endpoint answers only when the attempt gives up on it (its timeout aborts the request).
    const fetch = (async (url: string, init: RequestInit) =>
      url.startsWith("https://fast.")
        ? new Response(null, { status: 204 })
        : new Promise<Response>((_, reject) => init.signal!.addEventListener("abort", () => reject(init.signal!.reason)))) as unknown as typeof globalThis.fetch;
    const acked: string[] = [];
    const message = (id: string) => ({ id, timestamp: new Date(), attempts: 1, body: { kind: "deliver", id } as WebhookMessage, ack: () => void acked.push(id), retry: () => {} });
    const batch = { queue: "video-refresher-webhooks", messages: [message(slow.id), message(fast.id)], ackAll: () => {}, retryAll: () => {} } as unknown as MessageBatch<WebhookMessage>;
    const queue = { send: async () => {}, sendBatch: async () => {} } as unknown as Queue<WebhookMessage>;
    const background: Promise<unknown>[] = [];
    const started = Date.now();
    await consumeWebhookBatch(batch, { db, queue, policy: { allowLocalHttp: false }, fetch, now: () => later, waitUntil: (p) => void background.push(p) });
    // Back well before the slow endpoint's 15-s timeout, so the queue can hand the next batch (other users') over.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(acked).toContain(fast.id);
    const [fastRow] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, fast.id));
    expect(fastRow).toMatchObject({ status: "delivered", attempts: 1 });
    // The slow attempt is still under its lease, so no other consumer sends it meanwhile.
    const [slowRow] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, slow.id));
    expect(slowRow).toMatchObject({ status: "pending", attempts: 1 });
    expect(slowRow!.leaseUntil).toBeGreaterThan(later + 15_000);
    expect(background.length).toBeGreaterThan(0);
    // It ends at its own timeout, recorded once as a failed attempt of that same claim, retried later.
    await Promise.all(background);
    const [slowAfter] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, slow.id));
    expect(slowAfter).toMatchObject({ status: "pending", attempts: 1, leaseUntil: null, lastError: "no response within 15 s" });
  });
});

describe("consumeWebhookBatch under the platform's connection limit", () => {
  it("sends at most 4 of a batch at once (an invocation has 6 connections), keeping 2 for the database, and delivers them all", async () => {
    const later = Date.now() + HOUR;
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const s = await signIn();
      const hook = await createHook(s, { url: `https://receiver-${i}.example.com/hook`, events: ["job.cancelled"] });
      const job = await seedJob(s.id);
      await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, later);
      ids.push((await deliveriesOf(hook.id))[0]!.id);
    }
    let inFlight = 0;
    let most = 0;
    const fetch = (async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 100));
      inFlight--;
      return new Response(null, { status: 204 });
    }) as unknown as typeof globalThis.fetch;
    const message = (id: string) => ({ id, timestamp: new Date(), attempts: 1, body: { kind: "deliver", id } as WebhookMessage, ack: () => {}, retry: () => {} });
    const batch = { queue: "video-refresher-webhooks", messages: ids.map(message), ackAll: () => {}, retryAll: () => {} } as unknown as MessageBatch<WebhookMessage>;
    const queue = { send: async () => {}, sendBatch: async () => {} } as unknown as Queue<WebhookMessage>;
    await consumeWebhookBatch(batch, { db, queue, policy: { allowLocalHttp: false }, fetch, now: () => later });
    expect(most).toBe(MAX_CONCURRENT_MESSAGES);
    const rows = await db.select().from(webhookDeliveries).where(inArray(webhookDeliveries.id, ids));
    expect(rows.map((r) => r.status)).toEqual(ids.map(() => "delivered"));
  });
});

describe("sweepWebhookDeliveries (cron)", () => {
  it("enqueues due pending deliveries, schedules the minute's 5-s sweeps and prunes settled week-old rows", async () => {
    const s = await signIn();
    const hook = await createHook(s, { url: HOOK, events: ["job.cancelled"] });
    const job = await seedJob(s.id);
    const then = Date.now() - 8 * 24 * HOUR;
    await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, then);
    const [row] = await deliveriesOf(hook.id);
    const sent: { body: WebhookMessage; delaySeconds?: number }[] = [];
    const queue = { sendBatch: async (msgs: { body: WebhookMessage; delaySeconds?: number }[]) => void sent.push(...msgs) } as unknown as Queue<WebhookMessage>;

    // Two days ahead: even if another file's request kicked the real consumer at this row and it failed (no network
    // here), its backoff and lease are over by then, so the sweep sees it due.
    const report = await sweepWebhookDeliveries({ db, queue }, Date.now() + 2 * 24 * HOUR);
    expect(sent).toContainEqual({ body: { kind: "deliver", id: row!.id } });
    const sweeps = sent.filter((m) => m.body.kind === "sweep").map((m) => m.delaySeconds);
    expect(sweeps).toEqual([5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]);
    expect(report.scheduled).toBe(11);
    // Still pending: kept however old.
    expect(await deliveriesOf(hook.id)).toHaveLength(1);
    await db.update(webhookDeliveries).set({ status: "delivered" }).where(eq(webhookDeliveries.id, row!.id));
    expect(await pruneDeliveries(db, Date.now() - 7 * 24 * HOUR)).toBeGreaterThanOrEqual(1);
    expect(await deliveriesOf(hook.id)).toHaveLength(0);
  });
});

describe("GET /webhooks (page)", () => {
  it("serves the Webhooks shell, linked from the nav, without user data", async () => {
    const s = await signIn();
    await createHook(s);
    const res = await s.call("/webhooks");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const html = await res.text();
    expect(html).toContain('data-page="webhooks"');
    expect(html).toContain('href="/webhooks"');
    expect(html).toContain('id="webhook-form"');
    expect(html).not.toContain(HOOK);
    expect(html).not.toContain("whsec_");
  });
});

describe("WEBHOOKS_ALLOW_LOCAL_HTTP", () => {
  const base = { LIBSQL_URL: "http://127.0.0.1:8080", RUNNER_TOKEN: "0123456789abcdef0123" };
  it("is off unless set to 1 (or true), and any other value stops the worker with a readable message", () => {
    expect(ConfigSchema.parse(base).WEBHOOKS_ALLOW_LOCAL_HTTP).toBe(false);
    expect(ConfigSchema.parse({ ...base, WEBHOOKS_ALLOW_LOCAL_HTTP: "" }).WEBHOOKS_ALLOW_LOCAL_HTTP).toBe(false);
    expect(ConfigSchema.parse({ ...base, WEBHOOKS_ALLOW_LOCAL_HTTP: "0" }).WEBHOOKS_ALLOW_LOCAL_HTTP).toBe(false);
    expect(ConfigSchema.parse({ ...base, WEBHOOKS_ALLOW_LOCAL_HTTP: "1" }).WEBHOOKS_ALLOW_LOCAL_HTTP).toBe(true);
    expect(ConfigSchema.parse({ ...base, WEBHOOKS_ALLOW_LOCAL_HTTP: "TRUE" }).WEBHOOKS_ALLOW_LOCAL_HTTP).toBe(true);
    const bad = ConfigSchema.safeParse({ ...base, WEBHOOKS_ALLOW_LOCAL_HTTP: "yes" });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toBe("WEBHOOKS_ALLOW_LOCAL_HTTP must be 1 or 0");
  });
});
