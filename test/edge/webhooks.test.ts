import { and, eq, inArray, sql } from "drizzle-orm";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { pauseJob, requestCancel, resumeJob } from "../../db/queries/jobs";
import { failVariation, finishVariation } from "../../db/queries/variations";
import { newId } from "../../db/ids";
import { webhookDeliveries, webhooks } from "../../db/schema";
import {
  ENQUEUE_HOLD_MS,
  EXPIRED_ERROR,
  expireDeliveries,
  MANUAL_SEND_PENDING_LIMIT,
  pruneDeliveries,
  redeliverDelivery,
  takeDueDeliveries,
} from "../../db/queries/webhooks";
import { createTestDelivery, createWebhook, rotateWebhookSecret } from "../../db/queries/webhooks";
import { deliverOnce, MAX_DELIVERY_ATTEMPTS } from "../../edge/lib/webhooks/deliver";
import {
  consumeWebhookBatch,
  enqueueDueDeliveries,
  EXPIRE_BATCH,
  MAX_CONCURRENT_MESSAGES,
  PRUNE_BATCH,
  sweepWebhookDeliveries,
  type WebhookMessage,
} from "../../edge/lib/webhooks/queue";
import { ConfigSchema } from "../../edge/env";
import { call, claimAll, db, ORIGIN, seedJob, signIn, type Session } from "./helpers";
import { env } from "cloudflare:workers";
import worker from "../../edge/index";

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

  it("refuses an API token that expires a new endpoint, a new address or a new secret (403 expiring_token, nothing changed): they would outlive it", async () => {
    const s = await signIn();
    const token = async (expiresInDays: number | null) =>
      ((await (await s.call("/api/tokens", { method: "POST", json: { name: "t", expiresInDays } })).json()) as { token: string }).token;
    const expiring = await token(1);
    const refused = await call("/api/webhooks", { method: "POST", token: expiring, json: { url: HOOK } });
    expect([refused.status, await refused.json()]).toMatchObject([403, { error: { code: "expiring_token" } }]);
    const hook = await createHook(s);
    const moved = await call(`/api/webhooks/${hook.id}`, { method: "PATCH", token: expiring, json: { url: "https://elsewhere.example.com/h" } });
    expect([moved.status, await moved.json()]).toMatchObject([403, { error: { code: "expiring_token" } }]);
    const rotated = await call(`/api/webhooks/${hook.id}/rotate-secret`, { method: "POST", token: expiring });
    expect([rotated.status, await rotated.json()]).toMatchObject([403, { error: { code: "expiring_token" } }]);
    // Choosing fewer events gives nothing away: allowed.
    const narrowed = await call(`/api/webhooks/${hook.id}`, { method: "PATCH", token: expiring, json: { events: ["job.failed"] } });
    expect(narrowed.status).toBe(200);
    const list = (await (await s.call("/api/webhooks")).json()) as { webhooks: { url: string; events: string[] }[] };
    expect(list.webhooks).toEqual([expect.objectContaining({ url: HOOK, events: ["job.failed"] })]);
    expect((await call("/api/webhooks", { method: "POST", token: await token(null), json: { url: HOOK } })).status).toBe(201);
  });

  it("answers 404 for another user's webhook on every route", async () => {
    const owner = await signIn();
    const other = await signIn();
    const hook = await createHook(owner);
    expect((await other.call(`/api/webhooks/${hook.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await other.call(`/api/webhooks/${hook.id}/deliveries`)).status).toBe(404);
    expect((await other.call(`/api/webhooks/${hook.id}/test`, { method: "POST" })).status).toBe(404);
    expect((await other.call(`/api/webhooks/${hook.id}/rotate-secret`, { method: "POST" })).status).toBe(404);
    expect((await other.call(`/api/webhooks/${hook.id}`, { method: "PATCH", json: { events: ["job.failed"] } })).status).toBe(404);
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
    const hook = await createHook(s);
    expect((await s.call(`/api/webhooks/${hook.id}/rotate-secret`, { method: "POST", origin: "https://evil.example" })).status).toBe(403);
    expect((await s.call(`/api/webhooks/${hook.id}`, { method: "PATCH", json: { url: `${HOOK}/evil` }, origin: "https://evil.example" })).status).toBe(403);
    expect((await db.select({ secret: webhooks.secret }).from(webhooks).where(eq(webhooks.id, hook.id)))[0]!.secret).toBe(hook.secret);
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

describe("PATCH /api/webhooks/:id", () => {
  const patch = (s: Session, id: string, json: Record<string, unknown>) => s.call(`/api/webhooks/${id}`, { method: "PATCH", json });
  const rowOf = async (id: string) => (await db.select().from(webhooks).where(eq(webhooks.id, id)))[0]!;

  it("changes the url and events in place: same id and secret, and a pending delivery goes to the new url", async () => {
    const s = await signIn();
    const hook = await createHook(s, { url: HOOK, events: ["job.cancelled"] });
    const job = await seedJob(s.id);
    const later = Date.now() + HOUR;
    await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, later);
    const res = await patch(s, hook.id, { url: `${HOOK}/moved`, events: ["job.cancelled", "job.completed"] });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: hook.id, url: `${HOOK}/moved`, events: ["job.cancelled", "job.completed"], createdAt: hook.createdAt });
    const [row] = await deliveriesOf(hook.id);
    const r = receiver([204]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row!.id, later)).toMatchObject({ status: "delivered" });
    expect(r.seen[0]!.url).toBe(`${HOOK}/moved`);
    expect(() => new Webhook(hook.secret).verify(r.seen[0]!.body, r.seen[0]!.headers)).not.toThrow();
    // Only events: the url stays.
    expect(await (await patch(s, hook.id, { events: ["job.failed"] })).json()).toMatchObject({ url: `${HOOK}/moved`, events: ["job.failed"] });
  });

  it("a new url starts without the old endpoint's failure hold and tries its waiting rows now; the same url keeps the hold", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const now = Date.now();
    const heldUntil = now + HOUR;
    await db.update(webhooks).set({ failures: 6, heldUntil }).where(eq(webhooks.id, hook.id));
    const waiting = newId();
    await db.insert(webhookDeliveries).values({
      id: waiting, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: now, status: "pending", attempts: 1,
      nextAttemptAt: heldUntil, lastAttemptAt: now, lastStatusCode: 503, lastError: "HTTP 503", createdAt: now, payload: "{}",
    });
    // The same endpoint, however it is written (a fragment is never sent, a bare "?" asks for nothing).
    for (const same of [HOOK, `${HOOK}#retry`, `${HOOK}?`]) {
      const res = await patch(s, hook.id, { url: same });
      expect(res.status, same).toBe(200);
      expect(((await res.json()) as { url: string }).url, same).toBe(HOOK);
      expect(await rowOf(hook.id), same).toMatchObject({ failures: 6, heldUntil });
    }
    expect((await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, waiting)))[0]!.nextAttemptAt).toBe(heldUntil);
    const t0 = Date.now();
    expect((await patch(s, hook.id, { url: `${HOOK}/fixed` })).status).toBe(200);
    expect(await rowOf(hook.id)).toMatchObject({ failures: 0, heldUntil: null, url: `${HOOK}/fixed` });
    const due = (await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, waiting)))[0]!.nextAttemptAt;
    expect(due).toBeGreaterThanOrEqual(t0);
    expect(due).toBeLessThanOrEqual(Date.now());
  });

  it("an attempt to the old URL that fails after the URL changed does not hold the new one", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const later = Date.now() + HOUR;
    const id = await createTestDelivery(db, { userId: s.id, webhookId: hook.id }, later);
    // The user fixes the URL while a send to the broken one is under way; that send then fails.
    const slowFailure = (async () => {
      expect((await patch(s, hook.id, { url: `${HOOK}/fixed` })).status).toBe(200);
      return new Response(null, { status: 503 });
    }) as unknown as typeof globalThis.fetch;
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: slowFailure }, id, later)).toMatchObject({ done: true });
    expect(await rowOf(hook.id)).toMatchObject({ url: `${HOOK}/fixed`, failures: 0, heldUntil: null });
  });

  it("new events apply to job changes from then on", async () => {
    const s = await signIn();
    const hook = await createHook(s, { url: HOOK, events: ["job.cancelled"] });
    expect((await patch(s, hook.id, { events: ["job.completed"] })).status).toBe(200);
    const job = await seedJob(s.id);
    await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, Date.now() + HOUR);
    expect(await deliveriesOf(hook.id)).toEqual([]);
  });

  it("refuses a bad change with a clear error and changes nothing", async () => {
    const s = await signIn();
    const hook = await createHook(s, { url: HOOK, events: ["job.cancelled"] });
    const before = await rowOf(hook.id);
    for (const [json, code] of [
      [{}, "invalid_request"],
      [{ url: HOOK, secret: "whsec_mine" }, "invalid_request"],
      [{ events: [] }, "invalid_request"],
      [{ events: ["job.exploded"] }, "invalid_request"],
      [{ url: "https://10.0.0.1/hook" }, "webhook_url_not_allowed"],
      [{ url: "https://user:pw@hooks.example.com/" }, "invalid_webhook_url"],
    ] as const) {
      const res = await patch(s, hook.id, json);
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code, JSON.stringify(json)).toBe(code);
    }
    expect(await rowOf(hook.id)).toEqual(before);
    expect((await patch(s, newId(), { events: ["job.failed"] })).status).toBe(404);
  });
});

describe("POST /api/webhooks with an Idempotency-Key", () => {
  const create = (s: Session, key: string, json: Record<string, unknown> = { url: HOOK }) =>
    s.call("/api/webhooks", { method: "POST", json, headers: { "idempotency-key": key } });
  const count = async (s: Session) => ((await (await s.call("/api/webhooks")).json()) as { webhooks: unknown[] }).webhooks.length;

  it("a create repeated after its answer was lost gets the same webhook and secret back, and the URL is subscribed once", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const first = await create(s, key, { url: HOOK, events: ["job.cancelled"] }); // this answer never arrived
    expect(first.status).toBe(201);
    const again = await create(s, key, { url: HOOK, events: ["job.cancelled"] });
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toEqual(await first.json());
    expect(await count(s)).toBe(1);
    // One subscription: a job event is one delivery, not two under different ids.
    const job = await seedJob(s.id);
    await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, Date.now() + HOUR);
    const rows = await db.select().from(webhookDeliveries).innerJoin(webhooks, eq(webhooks.id, webhookDeliveries.webhookId)).where(eq(webhooks.userId, s.id));
    expect(rows).toHaveLength(1);
  });

  it("a webhook created with the key before the request arrived is answered, and a second insert with the key fails on its unique index", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const twin = await createWebhook(db, { userId: s.id, url: HOOK, events: ["job.completed"], idempotencyKey: key }, Date.now());
    await expect(createWebhook(db, { userId: s.id, url: HOOK, events: ["job.completed"], idempotencyKey: key }, Date.now())).rejects.toThrow();
    const res = await create(s, key, { url: HOOK, events: ["job.completed"] });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ id: twin.id, secret: twin.secret });
    expect(await count(s)).toBe(1);
  });

  it("answers a replay even at the 10-webhook limit, and keys are per user", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const first = (await (await create(s, key)).json()) as { id: string };
    for (let i = 1; i < 10; i++) await createHook(s, { url: `${HOOK}/${i}` });
    const replay = await create(s, key);
    expect(replay.status).toBe(201);
    expect(((await replay.json()) as { id: string }).id).toBe(first.id);
    const other = await signIn();
    const theirs = await create(other, key);
    expect(theirs.status).toBe(201);
    expect(theirs.headers.get("idempotent-replayed")).toBeNull();
    expect(((await theirs.json()) as { id: string }).id).not.toBe(first.id);
  });

  it("a retry still replays after the webhook was edited, and not after 24 hours (no standing way to read the secret)", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const first = (await (await create(s, key)).json()) as { id: string };
    expect((await s.call(`/api/webhooks/${first.id}`, { method: "PATCH", json: { url: `${HOOK}/edited`, events: ["job.failed"] } })).status).toBe(200);
    const retry = await create(s, key);
    expect(retry.status).toBe(201);
    expect(await retry.json()).toMatchObject({ id: first.id, url: `${HOOK}/edited` });
    await db.update(webhooks).set({ createdAt: Date.now() - 24 * HOUR - 1000 }).where(eq(webhooks.id, first.id));
    const late = await create(s, key);
    expect(late.status).toBe(422);
    const body = (await late.json()) as { error: { code: string } };
    expect(body.error.code).toBe("idempotency_key_expired");
    expect(JSON.stringify(body)).not.toContain("whsec_");
    expect(await count(s)).toBe(1);
  });

  it("refuses the same key with another url or events (422) and a malformed key (400), creating nothing", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    expect((await create(s, key, { url: HOOK, events: ["job.completed", "job.failed"] })).status).toBe(201);
    expect((await create(s, key, { url: HOOK, events: ["job.failed", "job.completed"] })).status).toBe(201);
    for (const json of [{ url: `${HOOK}/other`, events: ["job.completed", "job.failed"] }, { url: HOOK, events: ["job.completed"] }]) {
      const res = await create(s, key, json);
      expect(res.status, JSON.stringify(json)).toBe(422);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("idempotency_key_reused");
    }
    const bad = await create(s, "not a key");
    expect(bad.status).toBe(400);
    expect(await count(s)).toBe(1);
  });
});

describe("POST /api/webhooks/:id/rotate-secret", () => {
  type Rotated = { id: string; secret: string; previousSecretsValidUntil: string | null };
  async function rotate(s: Session, hookId: string, json?: Record<string, unknown>): Promise<Rotated> {
    const res = await s.call(`/api/webhooks/${hookId}/rotate-secret`, { method: "POST", ...(json ? { json } : {}) });
    expect(res.status).toBe(200);
    return (await res.json()) as Rotated;
  }
  /**
   * A test event sent at `at`, as a receiver gets it. `at` is at least an hour ahead: the real sweep and consumer
   * of this worker (and other files' kicks) send any row due now, and deliverOnce would find it taken.
   */
  async function sendTest(s: Session, hookId: string, at = Date.now() + HOUR) {
    const id = await createTestDelivery(db, { userId: s.id, webhookId: hookId }, at);
    const r = receiver([204]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, id, at)).toMatchObject({ status: "delivered" });
    const sent = r.seen[0]!;
    return {
      signatures: sent.headers["webhook-signature"]!.split(" ").length,
      verifies: (secret: string) => {
        try {
          new Webhook(secret).verify(sent.body, sent.headers);
          return true;
        } catch {
          return false;
        }
      },
    };
  }

  it("gives a new secret, shown once; for a day deliveries verify with the new or the replaced secret, then with the new one only", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now();
    const rotated = await rotate(s, hook.id);
    expect(rotated.id).toBe(hook.id);
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(hook.secret);
    const until = Date.parse(rotated.previousSecretsValidUntil!);
    expect(until).toBeGreaterThanOrEqual(t0 + 24 * HOUR);
    expect(until).toBeLessThanOrEqual(Date.now() + 24 * HOUR);
    expect(JSON.stringify(await (await s.call("/api/webhooks")).json())).not.toContain("whsec_");

    const now = await sendTest(s, hook.id);
    expect([now.verifies(rotated.secret), now.verifies(hook.secret), now.signatures]).toEqual([true, true, 2]);
    const dayLater = await sendTest(s, hook.id, until + 1);
    expect([dayLater.verifies(rotated.secret), dayLater.verifies(hook.secret), dayLater.signatures]).toEqual([true, false, 1]);
  });

  it("a rotation repeated because its reply was lost leaves the secret the receiver has signing; at most five old secrets sign", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    await rotate(s, hook.id); // its reply never arrived: nobody knows this secret
    const again = await rotate(s, hook.id);
    const sent = await sendTest(s, hook.id);
    expect([sent.verifies(hook.secret), sent.verifies(again.secret), sent.signatures]).toEqual([true, true, 3]);

    const latest = [];
    for (let i = 0; i < 5; i++) latest.push(await rotate(s, hook.id));
    const capped = await sendTest(s, hook.id);
    expect(capped.signatures).toBe(6);
    expect(capped.verifies(latest.at(-1)!.secret)).toBe(true);
    expect(capped.verifies(latest[0]!.secret)).toBe(true);
    expect(capped.verifies(hook.secret)).toBe(false);
  });

  it("keepPreviousSeconds 0 stops every old secret at once (a leaked secret)", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const first = await rotate(s, hook.id);
    const leaked = await rotate(s, hook.id, { keepPreviousSeconds: 0 });
    expect(leaked.previousSecretsValidUntil).toBeNull();
    const sent = await sendTest(s, hook.id);
    expect([sent.verifies(leaked.secret), sent.verifies(first.secret), sent.verifies(hook.secret), sent.signatures]).toEqual([true, false, false, 1]);
  });

  it("a rotation that another one overtakes between its read and its write reads again: neither drops the secret the other replaced", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    let overtaken: Rotated | null = null;
    // The other rotation lands right before this one's first write: the compare-and-set must see the changed secret.
    const racing = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop !== "update" || overtaken) return Reflect.get(target, prop, receiver);
        return (table: typeof webhooks) => ({
          set: (values: Record<string, unknown>) => ({
            where: (where: ReturnType<typeof eq>) => ({
              returning: async (fields: Record<string, unknown>) => {
                overtaken = await rotate(s, hook.id);
                return target.update(table).set(values).where(where).returning(fields as never);
              },
            }),
          }),
        });
      },
    });
    const mine = await rotateWebhookSecret(racing, { userId: s.id, webhookId: hook.id, keepPreviousMs: 24 * HOUR }, Date.now());
    expect(overtaken).not.toBeNull();
    const sent = await sendTest(s, hook.id);
    expect([sent.verifies(mine.secret), sent.verifies(overtaken!.secret), sent.verifies(hook.secret), sent.signatures]).toEqual([true, true, true, 3]);
  });

  it("the time a rotation answers holds for every old secret, the receiver's too when a rotation is repeated later", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const rotateAt = (at: number, keepPreviousMs: number) => rotateWebhookSecret(db, { userId: s.id, webhookId: hook.id, keepPreviousMs }, at);
    const t0 = Date.now();
    await rotateAt(t0, HOUR); // its answer was lost: the receiver still has the first secret, good for an hour
    const again = await rotateAt(t0 + HOUR / 2, HOUR);
    expect(again.previousSecretsValidUntil).toBe(t0 + 1.5 * HOUR);
    const before = await sendTest(s, hook.id, t0 + 1.5 * HOUR - 1000);
    expect([before.verifies(hook.secret), before.verifies(again.secret)]).toEqual([true, true]);
    const after = await sendTest(s, hook.id, t0 + 1.5 * HOUR);
    expect([after.verifies(hook.secret), after.verifies(again.secret), after.signatures]).toEqual([false, true, 1]);
  });

  it("an empty body, with or without a JSON content type, rotates with the defaults", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const path = `/api/webhooks/${hook.id}/rotate-secret`;
    for (const init of [{}, { body: "", headers: { "content-type": "application/json" } }, { body: " \n", headers: { "content-type": "application/json; charset=utf-8" } }]) {
      const t0 = Date.now();
      const res = await s.call(path, { method: "POST", ...init });
      expect(res.status, JSON.stringify(init)).toBe(200);
      expect(Date.parse(((await res.json()) as Rotated).previousSecretsValidUntil!)).toBeGreaterThanOrEqual(t0 + 24 * HOUR);
    }
  });

  it("refuses a bad body with a clear error and keeps the secret as it was", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const path = `/api/webhooks/${hook.id}/rotate-secret`;
    for (const json of [{ keepPreviousSeconds: -1 }, { keepPreviousSeconds: 604_801 }, { keepPreviousSeconds: 1.5 }, { keepPreviousSeconds: "60" }, { keep: 60 }]) {
      const res = await s.call(path, { method: "POST", json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(((await res.json()) as { error: { code: string; message: string } }).error.code).toBe("invalid_request");
    }
    const malformed = await s.call(path, { method: "POST", body: "{", headers: { "content-type": "application/json" } });
    expect(malformed.status).toBe(400);
    // Not read as "no body" (which would keep the old secret signing for a day when 0 was asked).
    for (const type of ["text/plain", "application/json5", "application/x-www-form-urlencoded"]) {
      const other = await s.call(path, { method: "POST", body: JSON.stringify({ keepPreviousSeconds: 0 }), headers: { "content-type": type } });
      expect(other.status, type).toBe(415);
      expect(((await other.json()) as { error: { code: string } }).error.code, type).toBe("unsupported_content_type");
    }
    const [row] = await db.select({ secret: webhooks.secret, retiring: webhooks.retiringSecrets }).from(webhooks).where(eq(webhooks.id, hook.id));
    expect(row).toEqual({ secret: hook.secret, retiring: null });
  });
});

describe("manual sends when the queue refuses the message", () => {
  const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
  const refusing = { send: async () => { throw new Error("queue unavailable"); }, sendBatch: async () => { throw new Error("queue unavailable"); } };
  const postRefused = (s: Session, path: string) =>
    worker.fetch(new Request(ORIGIN + path, { method: "POST", headers: { cookie: s.cookie, origin: ORIGIN } }), { ...env, WEBHOOK_QUEUE: refusing } as never, ctx);

  it("answers a test event and a redelivery 202, with the delivery pending for the sweep to send, instead of an error for work that was done", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const test = await postRefused(s, `/api/webhooks/${hook.id}/test`);
    expect(test.status).toBe(202);
    const { id } = (await test.json()) as { id: string };
    expect((await deliveriesOf(hook.id)).map((d) => [d.id, d.status])).toEqual([[id, "pending"]]);
    // Sent by the consumer and failed for good: a redelivery while the queue refuses still answers 202 and is pending.
    await db.update(webhookDeliveries).set({ status: "failed", attempts: MAX_DELIVERY_ATTEMPTS }).where(eq(webhookDeliveries.id, id));
    const again = await postRefused(s, `/api/webhooks/${hook.id}/deliveries/${id}/redeliver`);
    expect(again.status).toBe(202);
    expect((await deliveriesOf(hook.id)).map((d) => [d.id, d.status])).toEqual([[id, "pending"]]);
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
  it("takes one due delivery per endpoint, every user's first endpoint before anyone's second: neither a backlog nor ten endpoints hold back another user's event", async () => {
    const [a, b] = [await signIn(), await signIn()];
    const hooksA = [await createHook(a), await createHook(a), await createHook(a)];
    const hookB = await createHook(b);
    const now = Date.now() + 3 * 24 * HOUR;
    // User A: 50 due deliveries on each of three endpoints, all older than user B's one event.
    for (const [h, hook] of hooksA.entries()) {
      await db.insert(webhookDeliveries).values(Array.from({ length: 50 }, (_, i) => ({
        id: `backlog-${hook.id}-${i}`, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: now - 2 * HOUR,
        status: "pending" as const, attempts: 0, nextAttemptAt: now - HOUR + h * 100 + i, payload: "{}", createdAt: now - 2 * HOUR,
      })));
    }
    await db.insert(webhookDeliveries).values({
      id: `event-${hookB.id}`, webhookId: hookB.id, jobId: null, event: "webhook.test", occurredAt: now - 60_000,
      status: "pending", attempts: 0, nextAttemptAt: now - 60_000, payload: "{}", createdAt: now - 60_000,
    });
    // (Other tests' rows may be due too: only ours are looked at, in the order taken.)
    const ours = (ids: string[]) => ids.filter((id) => id.startsWith("backlog-") || id === `event-${hookB.id}`);
    const due = ours(await takeDueDeliveries(db, now, 1000));
    // One per endpoint, the oldest of each; in the order the queue sends them: user B's right after A's first.
    expect(due).toEqual([`backlog-${hooksA[0]!.id}-0`, `event-${hookB.id}`, `backlog-${hooksA[1]!.id}-0`, `backlog-${hooksA[2]!.id}-0`]);
    // Nothing more of those endpoints while their rows wait in the queue.
    expect(ours(await takeDueDeliveries(db, now + 5_000, 1000))).toEqual([]);
    await db.delete(webhookDeliveries).where(inArray(webhookDeliveries.webhookId, [...hooksA.map((h) => h.id), hookB.id]));
  });

  it("takes a waiting row once: later sweeps leave it to its queued message until ENQUEUE_HOLD_MS, then take it again", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const now = Date.now() + 4 * 24 * HOUR;
    const id = `waiting-${hook.id}`;
    await db.insert(webhookDeliveries).values({
      id, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: now - HOUR,
      status: "pending" as const, attempts: 0, nextAttemptAt: now - HOUR, payload: "{}", createdAt: now - HOUR,
    });
    const ours = (ids: string[]) => ids.filter((x) => x === id);
    expect(ours(await takeDueDeliveries(db, now, 1000))).toEqual([id]);
    // The next sweeps (every 5 s, and after job-changing requests) find it queued already.
    expect(ours(await takeDueDeliveries(db, now + 5_000, 1000))).toEqual([]);
    expect(ours(await takeDueDeliveries(db, now + ENQUEUE_HOLD_MS - 1, 1000))).toEqual([]);
    // A message lost on the way: the row is taken again once the hold is over.
    expect(ours(await takeDueDeliveries(db, now + ENQUEUE_HOLD_MS, 1000))).toEqual([id]);
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
  it("replaces an event still waiting for its first try when the job reaches that state again (pause/resume in a loop), keeping the order of events and anything tried or redelivered", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const viewer = { id: s.id, email: s.email, role: s.role };
    const job = await seedJob(s.id);
    const limits = { storageBytes: 1e12, activeJobs: 100, queuedVariations: 10_000, openUploads: 10, unusedUploads: 100 };
    // Ten days ahead: no sweep of the shared test database takes these events while the test looks at them.
    let now = Date.now() + 10 * 86_400_000;
    const pause = async () => pauseJob(db, { jobId: job.id, viewer }, (now += 10));
    const resume = async () => resumeJob(db, { jobId: job.id, viewer, limits }, (now += 10));
    const events = async () =>
      (await deliveriesOf(hook.id)).filter((d) => d.jobId === job.id).sort((a, b) => a.createdAt - b.createdAt);
    for (let round = 0; round < 5; round++) {
      await pause();
      await resume();
    }
    const [only, ...none] = await events();
    expect(none).toEqual([]);
    // The newest occurrence: the last pause.
    expect(only).toMatchObject({ event: "job.paused", occurredAt: now - 10 });

    // Events keep their order: paused, then cancelled, then paused again is last.
    await requestCancel(db, { jobId: job.id, viewer }, (now += 10));
    await resume();
    await pause();
    expect((await events()).map((d) => d.event)).toEqual(["job.cancelled", "job.paused"]);

    // Tried once, or redelivered by hand with its bytes: kept, and the next pause is an event of its own.
    const waiting = (await events()).at(-1)!;
    await db.update(webhookDeliveries).set({ payload: "{}" }).where(eq(webhookDeliveries.id, waiting.id));
    await resume();
    await pause();
    expect((await events()).map((d) => d.event)).toEqual(["job.cancelled", "job.paused", "job.paused"]);

    // Unsubscribed from job.paused meanwhile: the waiting event (from while it was subscribed) stays, none is added.
    await db.update(webhooks).set({ events: JSON.stringify(["job.completed"]) }).where(eq(webhooks.id, hook.id));
    await resume();
    await pause();
    expect((await events()).map((d) => d.event)).toEqual(["job.cancelled", "job.paused", "job.paused"]);
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

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

  it("POSTs the job exactly as GET /api/jobs/:id returns it (its fields at the top level and under data), signed so standardwebhooks verifies it", async () => {
    const { s, hook, job, row, later } = await pendingEvent();
    const r = receiver([204]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later)).toMatchObject({ done: true, status: "delivered" });
    expect(r.seen).toHaveLength(1);
    const sent = r.seen[0]!;
    expect(sent.url).toBe(HOOK);
    expect(sent.headers["webhook-id"]).toBe(row.id);
    const payload = new Webhook(hook.secret).verify(sent.body, sent.headers) as { type: string; timestamp: string; data: unknown };
    expect(payload.type).toBe("job.cancelled");
    expect(payload.timestamp).toBe(new Date(later).toISOString());
    const shown = (await (await s.call(`/api/jobs/${job.id}`)).json()) as Record<string, unknown>;
    expect(payload.data).toEqual(shown);
    // The job's own fields at the top level too: the body is the job as GET /api/jobs/:id returns it, plus the envelope.
    expect(payload).toEqual({ ...shown, type: "job.cancelled", timestamp: new Date(later).toISOString(), data: shown });
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
    // Failed at the endpoint: held (the sweep picks the endpoint's next try once the hold is over).
    expect(first).toEqual({ done: true, status: "held" });
    const [afterFail] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, row.id));
    expect(afterFail).toMatchObject({ status: "pending", attempts: 1, lastStatusCode: 503, lastError: "HTTP 503" });
    // Not due yet: nothing is sent.
    expect(await deliverOnce(deps, row.id, later)).toEqual({ done: true, status: "skipped" });
    expect(await deliverOnce(deps, row.id, afterFail!.nextAttemptAt)).toMatchObject({ done: true, status: "delivered" });
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
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later + 2 * 60_000)).toMatchObject({ done: true, status: "delivered" });
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
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later + 5_000)).toMatchObject({ done: true, status: "delivered" });
    const [done] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, row.id));
    expect(done).toMatchObject({ status: "delivered", attempts: 1 });
  });

  it("gives up after the 24-hour series and refuses an endpoint that became disallowed", async () => {
    expect(MAX_DELIVERY_ATTEMPTS).toBeGreaterThan(10);
    const { row, later } = await pendingEvent();
    await db.update(webhookDeliveries).set({ attempts: MAX_DELIVERY_ATTEMPTS - 1 }).where(eq(webhookDeliveries.id, row.id));
    const r = receiver([500]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r.fetch }, row.id, later)).toMatchObject({ done: true, status: "failed" });

    const second = await pendingEvent();
    await db.run(`UPDATE webhooks SET url = 'https://192.168.0.10/' WHERE id = '${second.hook.id}'` as never);
    const r2 = receiver([200]);
    expect(await deliverOnce({ db, policy: { allowLocalHttp: false }, fetch: r2.fetch }, second.row.id, second.later)).toMatchObject({ done: true, status: "failed" });
    expect(r2.seen).toHaveLength(0);
  });
});

describe("one send at a time per endpoint, and a failing endpoint waits as a whole", () => {
  /** `n` due job events of the webhook (bodies stored already), oldest first, created `at`. */
  async function dueRows(webhookId: string, n: number, at: number) {
    const rows = Array.from({ length: n }, (_, i) => ({
      id: newId(), webhookId, jobId: newId(), event: "job.completed", occurredAt: at,
      status: "pending" as const, attempts: 0, nextAttemptAt: at + i, payload: `{"n":${i}}`, createdAt: at,
    }));
    await db.insert(webhookDeliveries).values(rows);
    return rows.map((r) => r.id);
  }
  const policy = { allowLocalHttp: false };
  const rowOf = async (id: string) => (await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id)))[0]!;
  const queueInto = (sent: WebhookMessage[]) =>
    ({
      send: async (body: WebhookMessage) => void sent.push(body),
      sendBatch: async (msgs: { body: WebhookMessage }[]) => void sent.push(...msgs.map((m) => m.body)),
    }) as unknown as Queue<WebhookMessage>;
  const batchOf = (messages: WebhookMessage[]) =>
    ({
      queue: "video-refresher-webhooks",
      messages: messages.map((body, i) => ({ id: String(i), timestamp: new Date(), attempts: 1, body, ack: () => {}, retry: () => {} })),
      ackAll: () => {},
      retryAll: () => {},
    }) as unknown as MessageBatch<WebhookMessage>;

  const hookRow = async (id: string) => (await db.select().from(webhooks).where(eq(webhooks.id, id)))[0]!;

  it("holds a failing endpoint as a whole, backing off with its failures in a row whichever delivery is tried", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 6 * 24 * HOUR;
    const [r1, r2, r3] = await dueRows(hook.id, 3, t0 - 60_000);
    const r = receiver([503]);
    // Held: no message of r1's own is queued for the end of the hold (the sweep picks the endpoint's next try).
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r1!, t0)).toEqual({ done: true, status: "held" });
    const first = await hookRow(hook.id);
    expect(first.failures).toBe(1);
    expect(first.heldUntil! - t0).toBeGreaterThanOrEqual(5_000);
    // Held: its other rows are neither taken by a sweep nor sent by a message for them.
    expect(await takeDueDeliveries(db, t0 + 1_000, 1000, { webhookId: hook.id })).toEqual([]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r2!, t0 + 1_000)).toEqual({ done: true, status: "skipped" });
    expect(r.seen).toHaveLength(1);
    // Once the hold is over, the oldest goes (not the one that failed: one payload cannot hold the rest back), and
    // its failure doubles the endpoint's backoff.
    const t1 = first.heldUntil! + 1;
    expect(await takeDueDeliveries(db, t1, 1000, { webhookId: hook.id })).toEqual([r2]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r2!, t1)).toEqual({ done: true, status: "held" });
    const second = await hookRow(hook.id);
    expect(second.failures).toBe(2);
    expect(second.heldUntil! - t1).toBeGreaterThanOrEqual(10_000);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r3!, t1 + 5_000)).toEqual({ done: true, status: "skipped" });
    expect(r.seen).toHaveLength(2);
    // Then the one never tried, then the one tried longest ago: the tries rotate.
    const t2 = second.heldUntil! + 1;
    expect(await takeDueDeliveries(db, t2, 1000, { webhookId: hook.id })).toEqual([r3]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r3!, t2)).toEqual({ done: true, status: "held" });
    const t3 = (await hookRow(hook.id)).heldUntil! + 1;
    expect(await takeDueDeliveries(db, t3, 1000, { webhookId: hook.id })).toEqual([r1]);
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

  it("forgets an endpoint's failures in a row an hour after its last hold ended, but not sooner", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 6 * 24 * HOUR;
    const r = receiver([503]);
    for (const [heldUntil, failures] of [[t0 - 2 * HOUR, 1], [t0 - 10 * 60_000, 7]] as const) {
      await db.update(webhooks).set({ failures: 6, heldUntil }).where(eq(webhooks.id, hook.id));
      const [row] = await dueRows(hook.id, 1, t0 - 60_000);
      expect(await deliverOnce({ db, policy, fetch: r.fetch }, row!, t0)).toEqual({ done: true, status: "held" });
      expect((await hookRow(hook.id)).failures).toBe(failures);
      await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
    }
  });

  it("a test send that gets a 2xx frees a held endpoint at once: its waiting deliveries go, one after another", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 6 * 24 * HOUR;
    const [r1, r2] = await dueRows(hook.id, 2, t0 - 60_000);
    const r = receiver([503, 204, 204, 204]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r1!, t0)).toEqual({ done: true, status: "held" });
    // The user fixed the endpoint and sends a test event (a manual send skips the hold). Written here rather than
    // through POST /test: the route's message would reach this file's real consumer, on the real clock.
    const test = newId();
    await db.insert(webhookDeliveries).values({
      id: test, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: t0 + 500,
      status: "pending", attempts: 0, nextAttemptAt: t0 + 500, payload: "{}", createdAt: t0 + 500,
    });
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, test, t0 + 1_000)).toMatchObject({
      done: true, status: "delivered", next: { webhookId: hook.id },
    });
    expect(await hookRow(hook.id)).toMatchObject({ failures: 0, heldUntil: null });
    expect((await rowOf(r1!)).nextAttemptAt).toBeLessThan(t0 + 5_000);
    // Well after that (whatever the sends took): r2 was never tried, so it goes before r1.
    const t1 = t0 + 60_000;
    expect(await takeDueDeliveries(db, t1, 1000, { webhookId: hook.id })).toEqual([r2]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r2!, t1)).toMatchObject({ done: true, status: "delivered" });
    expect(await takeDueDeliveries(db, t1, 1000, { webhookId: hook.id })).toEqual([r1]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r1!, t1)).toMatchObject({ done: true, status: "delivered" });
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

  it("a delivery the receiver rejects (4xx) retries on its own and holds nothing: the endpoint's other deliveries go", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 6 * 24 * HOUR;
    const [r1, r2] = await dueRows(hook.id, 2, t0 - 60_000);
    const r = receiver([400, 204]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r1!, t0)).toMatchObject({ done: false, next: { webhookId: hook.id } });
    expect(await hookRow(hook.id)).toMatchObject({ failures: 0, heldUntil: null });
    expect(await takeDueDeliveries(db, t0 + 1_000, 1000, { webhookId: hook.id })).toEqual([r2]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r2!, t0 + 1_000)).toMatchObject({ done: true, status: "delivered" });
    expect(await rowOf(r1!)).toMatchObject({ status: "pending", lastStatusCode: 400 });
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

  it("sends nothing else to an endpoint while one send to it is in flight, not even the user's own test", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 6 * 24 * HOUR;
    const [r1, r2] = await dueRows(hook.id, 2, t0 - 60_000);
    let reached!: () => void;
    const inSend = new Promise<void>((res) => (reached = res));
    const hanging = (async () => (reached(), new Promise<Response>(() => {}))) as unknown as typeof fetch;
    void deliverOnce({ db, policy, fetch: hanging }, r1!, t0);
    await inSend;
    const r = receiver([204]);
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r2!, t0 + 1_000)).toEqual({ done: true, status: "skipped" });
    // Not even the user's own (untried) test event.
    const test = newId();
    await db.insert(webhookDeliveries).values({
      id: test, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: t0, status: "pending", attempts: 0, nextAttemptAt: t0, payload: "{}", createdAt: t0,
    });
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, test, t0 + 1_000)).toEqual({ done: true, status: "skipped" });
    expect(await takeDueDeliveries(db, t0 + 1_000, 1000, { webhookId: hook.id })).toEqual([]);
    expect(r.seen).toHaveLength(0);
    // The hanging send's lease runs out (its consumer died): the endpoint is free again.
    expect(await deliverOnce({ db, policy, fetch: r.fetch }, r2!, t0 + 2 * 60_000)).toMatchObject({ done: true, status: "delivered" });
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

  it("takes what the user sent by hand before the endpoint's waiting job events, even while the endpoint is held, and counts only those toward the 10", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 6 * 24 * HOUR;
    // Twelve job events waiting (an outage), older than anything the user sends now.
    const events = Array.from({ length: 12 }, (_, i) => ({
      id: newId(), webhookId: hook.id, jobId: newId(), event: "job.completed", occurredAt: t0 - HOUR,
      status: "pending" as const, attempts: i === 0 ? 1 : 0, lastStatusCode: null, nextAttemptAt: t0 - HOUR + i, payload: "{}", createdAt: t0 - HOUR,
    }));
    await db.insert(webhookDeliveries).values(events);
    await db.update(webhooks).set({ failures: 3, heldUntil: t0 + HOUR }).where(eq(webhooks.id, hook.id));
    // The job events do not use up the user's test sends. (That row goes to this file's real consumer on the real
    // clock: it is dropped, and the one looked at below is written on the test's clock.)
    const res = await s.call(`/api/webhooks/${hook.id}/test`, { method: "POST" });
    expect(res.status).toBe(202);
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.id, ((await res.json()) as { id: string }).id));
    const test = newId();
    await db.insert(webhookDeliveries).values({
      id: test, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: t0, status: "pending", attempts: 0, nextAttemptAt: t0, payload: "{}", createdAt: t0,
    });
    // Held: only the user's untried test may go.
    expect(await takeDueDeliveries(db, t0 + 1, 1000, { webhookId: hook.id })).toEqual([test]);
    // Not held: it still goes before the older job events.
    await db.update(webhookDeliveries).set({ enqueuedUntil: null }).where(eq(webhookDeliveries.id, test));
    await db.update(webhooks).set({ failures: 0, heldUntil: null }).where(eq(webhooks.id, hook.id));
    expect(await takeDueDeliveries(db, t0 + 1, 1000, { webhookId: hook.id })).toEqual([test]);
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
  });

  it("drains a healthy endpoint's backlog one send after another, each 2xx queueing the next without waiting for a sweep", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const t0 = Date.now() + 7 * 24 * HOUR;
    const ids = await dueRows(hook.id, 4, t0 - 60_000);
    const r = receiver([204]);
    const sent: WebhookMessage[] = [];
    const queue = queueInto(sent);
    expect(await takeDueDeliveries(db, t0, 1000, { webhookId: hook.id })).toEqual([ids[0]]);
    sent.push({ kind: "deliver", id: ids[0]! });
    for (let i = 0; i < ids.length; i++) {
      const message = sent.shift()!;
      await consumeWebhookBatch(batchOf([message]), { db, queue, policy, fetch: r.fetch, now: () => t0 + i });
    }
    expect(sent).toEqual([]);
    expect(r.seen.map((x) => JSON.parse(x.body))).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }]);
    expect((await deliveriesOf(hook.id)).map((d) => d.status)).toEqual(ids.map(() => "delivered"));
  });

  it("a user whose ten endpoints all fail costs one attempt per endpoint per backoff, and another user's event still goes out", async () => {
    const a = await signIn();
    const b = await signIn();
    const t0 = Date.now() + 8 * 24 * HOUR;
    const hooksA = [];
    const ids = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const hook = await createHook(a, { url: `https://down-${i}.example.com/hook` });
      for (const id of await dueRows(hook.id, 20, t0 - HOUR)) ids.add(id);
      hooksA.push(hook.id);
    }
    const hookB = await createHook(b, { url: "https://up.example.com/hook" });
    const [eventB] = await dueRows(hookB.id, 1, t0 - 1_000);
    ids.add(eventB!);
    const sent: WebhookMessage[] = [];
    const queue = queueInto(sent);
    const fetch = (async (url: string) => new Response(null, { status: url.startsWith("https://up.") ? 204 : 503 })) as unknown as typeof globalThis.fetch;
    // (Other tests' rows may be due too: only ours are looked at, in the order taken.)
    const ours = (taken: string[]) => taken.filter((id) => ids.has(id));
    const first = ours(await takeDueDeliveries(db, t0, 1000));
    // 11 rows, not 201: one per endpoint. User B's among the first two (A's first endpoint, then B).
    expect(first).toHaveLength(11);
    expect(first.indexOf(eventB!)).toBeLessThan(2);
    await consumeWebhookBatch(batchOf(first.map((id) => ({ kind: "deliver", id }))), { db, queue, policy, fetch, now: () => t0 });
    expect((await rowOf(eventB!)).status).toBe("delivered");
    // A's ten endpoints each failed once and are held: no retry message was queued, nothing of A is taken until the
    // holds are over, then one each.
    expect(sent.filter((m) => m.kind === "deliver" && ids.has(m.id))).toEqual([]);
    for (const id of hooksA) expect((await deliveriesOf(id)).reduce((n, d) => n + d.attempts, 0)).toBe(1);
    expect(ours(await takeDueDeliveries(db, t0 + 1_000, 1000))).toEqual([]);
    const holdsEnd = Math.max(...(await Promise.all(hooksA.map(async (id) => (await hookRow(id)).heldUntil!))));
    expect(ours(await takeDueDeliveries(db, holdsEnd + 1, 1000))).toHaveLength(10);
    await db.delete(webhookDeliveries).where(inArray(webhookDeliveries.webhookId, [...hooksA, hookB.id]));
  });

  it("fails a delivery still pending 24 hours after its event, even one that waited behind its failing endpoint; a redelivery gets a new window", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const now = Date.now() + 9 * 24 * HOUR;
    const [old] = await dueRows(hook.id, 1, now - 25 * HOUR);
    // An hour old and backing off: inside its window.
    const fresh = newId();
    await db.insert(webhookDeliveries).values({
      id: fresh, webhookId: hook.id, jobId: null, event: "webhook.test", occurredAt: now - HOUR,
      status: "pending", attempts: 3, nextAttemptAt: now + HOUR, payload: "{}", createdAt: now - HOUR,
    });
    // Outside its window, nothing takes it any more.
    expect(await takeDueDeliveries(db, now, 1000, { webhookId: hook.id })).toEqual([]);
    expect(await expireDeliveries(db, now)).toBeGreaterThanOrEqual(1);
    expect(await rowOf(old!)).toMatchObject({ status: "failed", lastError: EXPIRED_ERROR });
    expect((await rowOf(fresh)).status).toBe("pending");
    const log = (await (await s.call(`/api/webhooks/${hook.id}/deliveries`)).json()) as { deliveries: { id: string; status: string; lastError: string | null }[] };
    expect(log.deliveries.find((d) => d.id === old)).toMatchObject({ status: "failed", lastError: EXPIRED_ERROR });
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.id, fresh));
    // A redelivery starts a new 24 hours.
    await redeliverDelivery(db, { userId: s.id, webhookId: hook.id, deliveryId: old! }, now);
    await expireDeliveries(db, now + HOUR);
    expect((await rowOf(old!)).status).toBe("pending");
    expect(await takeDueDeliveries(db, now + HOUR, 1000, { webhookId: hook.id })).toEqual([old]);
    await expireDeliveries(db, now + 24 * HOUR + 1);
    expect((await rowOf(old!)).status).toBe("failed");
    await db.delete(webhookDeliveries).where(eq(webhookDeliveries.webhookId, hook.id));
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
  it("enqueues due pending deliveries, schedules the minute's 5-s sweeps, fails those past their 24-hour window and prunes settled week-old rows", async () => {
    const sweepAt = Date.now() + 2 * 24 * HOUR;
    const pendingEvent = async (at: number) => {
      const s = await signIn();
      const hook = await createHook(s, { url: HOOK, events: ["job.cancelled"] });
      const job = await seedJob(s.id);
      await requestCancel(db, { jobId: job.id, viewer: { id: s.id, email: s.email, role: s.role } }, at);
      return { hook, row: (await deliveriesOf(hook.id))[0]! };
    };
    const recent = await pendingEvent(sweepAt - HOUR);
    const stale = await pendingEvent(sweepAt - 25 * HOUR);
    const sent: { body: WebhookMessage; delaySeconds?: number }[] = [];
    const queue = { sendBatch: async (msgs: { body: WebhookMessage; delaySeconds?: number }[]) => void sent.push(...msgs) } as unknown as Queue<WebhookMessage>;

    const report = await sweepWebhookDeliveries({ db, queue }, sweepAt);
    expect(sent).toContainEqual({ body: { kind: "deliver", id: recent.row.id } });
    const sweeps = sent.filter((m) => m.body.kind === "sweep").map((m) => m.delaySeconds);
    expect(sweeps).toEqual([5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]);
    expect(report.scheduled).toBe(11);
    expect(report.expired).toBeGreaterThanOrEqual(1);
    expect((await deliveriesOf(recent.hook.id))[0]!.status).toBe("pending");
    expect((await deliveriesOf(stale.hook.id))[0]).toMatchObject({ status: "failed", lastError: EXPIRED_ERROR });
    // Settled rows leave the log after 7 days.
    await db.update(webhookDeliveries).set({ status: "delivered", createdAt: Date.now() - 8 * 24 * HOUR }).where(eq(webhookDeliveries.id, recent.row.id));
    expect(await pruneDeliveries(db, Date.now() - 7 * 24 * HOUR)).toBeGreaterThanOrEqual(1);
    expect(await deliveriesOf(recent.hook.id)).toHaveLength(0);
  });
});

describe("sweepWebhookDeliveries expiry", () => {
  it("fails a backlog bigger than one expiry batch within one cron run: rows past their window are not left in every sweep's way for hours", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const sweepAt = Date.now() + 3 * 24 * HOUR;
    const stale = sweepAt - 25 * HOUR;
    const n = EXPIRE_BATCH + 500;
    await db.run(sql`WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ${n})
      INSERT INTO webhook_deliveries (id, webhook_id, job_id, event, occurred_at, status, attempts, next_attempt_at, created_at)
      SELECT ${hook.id} || '-' || i, ${hook.id}, 'job-' || i, 'job.paused', ${stale}, 'pending', 0, ${stale}, ${stale} FROM k`);
    const queue = { sendBatch: async () => {} } as unknown as Queue<WebhookMessage>;
    const report = await sweepWebhookDeliveries({ db, queue }, sweepAt);
    expect(report.expired).toBeGreaterThanOrEqual(n);
    const left = await db.select({ n: sql<number>`count(*)` }).from(webhookDeliveries).where(and(eq(webhookDeliveries.webhookId, hook.id), eq(webhookDeliveries.status, "pending")));
    expect(left[0]!.n).toBe(0);
  });

  it("still expires the minute's backlog when the queue refuses the scheduled sweeps", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const sweepAt = Date.now() + 3 * 24 * HOUR;
    const stale = sweepAt - 25 * HOUR;
    await db.run(sql`INSERT INTO webhook_deliveries (id, webhook_id, job_id, event, occurred_at, status, attempts, next_attempt_at, created_at)
      VALUES (${hook.id} || '-x', ${hook.id}, 'job-x', 'job.paused', ${stale}, 'pending', 0, ${stale}, ${stale})`);
    const refusing = { sendBatch: async () => Promise.reject(new Error("queue unavailable")) } as unknown as Queue<WebhookMessage>;
    const report = await sweepWebhookDeliveries({ db, queue: refusing }, sweepAt);
    expect(report).toMatchObject({ scheduled: 0 });
    expect(report.expired).toBeGreaterThanOrEqual(1);
    const [row] = await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, `${hook.id}-x`));
    expect(row!.status).toBe("failed");
  });
});

describe("sweepWebhookDeliveries log prune", () => {
  it("removes a delivery log backlog bigger than one prune batch within one cron run: the log does not outgrow its 7 days", async () => {
    const s = await signIn();
    const hook = await createHook(s);
    const sweepAt = Date.now() + 3 * 24 * HOUR;
    const old = sweepAt - 8 * 24 * HOUR;
    const n = PRUNE_BATCH + 500;
    await db.run(sql`WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ${n})
      INSERT INTO webhook_deliveries (id, webhook_id, job_id, event, occurred_at, status, attempts, next_attempt_at, created_at)
      SELECT ${hook.id} || '-' || i, ${hook.id}, 'job-' || i, 'job.paused', ${old},
        CASE WHEN i % 2 = 0 THEN 'delivered' ELSE 'failed' END, 1, ${old}, ${old} FROM k`);
    const queue = { sendBatch: async () => {} } as unknown as Queue<WebhookMessage>;
    const report = await sweepWebhookDeliveries({ db, queue }, sweepAt);
    expect(report.pruned).toBeGreaterThanOrEqual(n);
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
