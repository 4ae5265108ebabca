import { env } from "cloudflare:workers";
import { count, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { USER_REQUEST_LIMIT } from "../../../db/limits";
import { jobs } from "../../../db/schema";
import worker from "../../../edge/index";
import { db, fakeMp4, formBody, ORIGIN, signIn, type Session } from "../helpers";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

/** A stand-in for the USER_REQUESTS binding: records every key it is asked about and answers `answer`. */
function limiter(answer: "allow" | "refuse" | "throw") {
  const keys: string[] = [];
  const binding = {
    async limit({ key }: { key: string }) {
      keys.push(key);
      if (answer === "throw") throw new Error("rate limiter unreachable");
      return { success: answer === "allow" };
    },
  };
  return { keys, binding };
}

/** Calls the worker with `binding` in place of the real USER_REQUESTS. */
function callWith(binding: { limit(o: { key: string }): Promise<{ success: boolean }> }, path: string, init: RequestInit = {}) {
  return worker.fetch(new Request(ORIGIN + path, init), { ...env, USER_REQUESTS: binding as RateLimit }, ctx);
}

const asCookie = (s: Session, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), cookie: s.cookie, origin: ORIGIN },
});

async function jobsOf(userId: string) {
  return (await db.select({ n: count() }).from(jobs).where(eq(jobs.userId, userId)))[0]!.n;
}

describe("the per-user request limit", () => {
  it("answers 429 rate_limited with Retry-After to a user over their budget, and the refused upload creates nothing", async () => {
    const s = await signIn();
    const { body, contentType } = formBody([
      { name: "variations", value: "2" },
      { name: "files", filename: "a.mp4", bytes: fakeMp4(4096) },
    ]);
    const refuse = limiter("refuse");
    const res = await callWith(refuse.binding, "/api/jobs", asCookie(s, { method: "POST", body, headers: { "content-type": contentType } }));
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe(String(USER_REQUEST_LIMIT.periodSeconds));
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe("rate_limited");
    expect(error.message).toContain(`${USER_REQUEST_LIMIT.requests} every ${USER_REQUEST_LIMIT.periodSeconds} seconds`);
    expect(await jobsOf(s.id)).toBe(0);
    expect(refuse.keys).toHaveLength(1);
  });

  it("counts a user's cookie and API-token requests against one budget keyed by the user, and another user's apart", async () => {
    const a = await signIn();
    const b = await signIn();
    const token = ((await (await a.call("/api/tokens", { method: "POST", json: { name: "script" } })).json()) as { token: string }).token;
    const allow = limiter("allow");
    expect((await callWith(allow.binding, "/api/me", asCookie(a))).status).toBe(200);
    expect((await callWith(allow.binding, "/api/me", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await callWith(allow.binding, "/api/jobs", asCookie(b))).status).toBe(200);
    expect(allow.keys.filter((k) => k.startsWith("user:"))).toEqual([`user:${a.id}`, `user:${a.id}`, `user:${b.id}`]);
    // Each credential has a budget of its own too, under a key that does not carry the secret itself.
    const credentials = allow.keys.filter((k) => k.startsWith("credential:"));
    expect(new Set(credentials).size).toBe(3);
    for (const k of credentials) expect(k).not.toContain(token);
    for (const k of credentials) expect(k).not.toContain(a.cookie.split("=")[1]!);
  });

  it("does not count requests without a credential: unauthenticated, sign-in, health and the runners' /internal", async () => {
    const allow = limiter("allow");
    expect((await callWith(allow.binding, "/api/jobs")).status).toBe(401);
    expect((await callWith(allow.binding, "/api/health")).status).toBe(200);
    expect((await callWith(allow.binding, "/internal/clock", { headers: { authorization: `Bearer ${env.RUNNER_TOKEN}` } })).status).toBe(200);
    const login = await callWith(allow.binding, "/api/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": "10.9.8.7" },
      body: JSON.stringify({ email: "nobody@test.example", password: "wrong password here" }),
    });
    expect(login.status).toBe(401);
    expect(allow.keys).toEqual([]);
  });

  it("lets requests through when the limiter itself fails", async () => {
    const s = await signIn();
    const broken = limiter("throw");
    const res = await callWith(broken.binding, "/api/me", asCookie(s));
    expect(res.status).toBe(200);
    expect(broken.keys).toEqual([expect.stringMatching(/^credential:/), `user:${s.id}`]);
  });

  it("refuses a loop with one credential before asking the database who it is", async () => {
    const s = await signIn();
    const keys: string[] = [];
    const credentialsRefused = {
      async limit({ key }: { key: string }) {
        keys.push(key);
        return { success: !key.startsWith("credential:") };
      },
    };
    // An unknown token would be 401 after its lookup; refused by its credential's budget, it never gets that far.
    const unknown = await callWith(credentialsRefused, "/api/me", { headers: { authorization: "Bearer vrt_unknown_token" } });
    expect(unknown.status).toBe(429);
    const cookie = await callWith(credentialsRefused, "/api/me", asCookie(s));
    expect([cookie.status, cookie.headers.get("set-cookie")]).toEqual([429, null]);
    expect(keys.every((k) => k.startsWith("credential:"))).toBe(true);
  });

  it("refuses a deployment without the binding instead of serving without a limit", async () => {
    const { USER_REQUESTS: _omitted, ...withoutBinding } = env;
    const res = await worker.fetch(new Request(`${ORIGIN}/api/health`), withoutBinding as typeof env, ctx);
    expect(res.status).toBe(500);
  });

  it("with the real binding, refuses the request past one window's budget, and only that user's", async () => {
    const { requests, periodSeconds } = USER_REQUEST_LIMIT;
    const windowOf = (t: number) => Math.floor(t / (periodSeconds * 1000));
    const me = (s: Session) => Promise.resolve(worker.fetch(new Request(`${ORIGIN}/api/me`, asCookie(s)), env, ctx)).then((r) => r.status);
    // The binding counts in fixed windows: a burst that crossed a boundary had its counts split and proves nothing,
    // so it is run again with fresh users.
    for (let tries = 1; ; tries++) {
      const [s, other] = await Promise.all([signIn(), signIn()]);
      // Start just after a window boundary: the burst then has the whole window (it takes a second or two).
      const left = periodSeconds * 1000 - (Date.now() % (periodSeconds * 1000));
      await new Promise((r) => setTimeout(r, left + 20));
      const started = windowOf(Date.now());
      const statuses: number[] = [];
      for (let i = 0; i < requests; i += 20) statuses.push(...(await Promise.all(Array.from({ length: Math.min(20, requests - i) }, () => me(s)))));
      const over = await me(s);
      const otherStatus = await me(other);
      if (windowOf(Date.now()) !== started && tries < 5) continue;
      expect(windowOf(Date.now()), "the burst fits one window").toBe(started);
      expect(statuses.filter((st) => st !== 200)).toEqual([]);
      expect([over, otherStatus]).toEqual([429, 200]);
      return;
    }
  }, 120_000);
});

describe("USER_REQUEST_LIMIT", () => {
  it("is what wrangler.toml gives the USER_REQUESTS binding", async () => {
    const toml = (await import("../../../wrangler.toml?raw")).default as string;
    const block = /\[\[ratelimits\]\]\s*\nname = "USER_REQUESTS"\s*\nnamespace_id = "\d+"\s*\nsimple = \{ limit = (\d+), period = (\d+) \}/.exec(toml);
    expect(block, "a [[ratelimits]] block named USER_REQUESTS").not.toBeNull();
    expect({ requests: Number(block![1]), periodSeconds: Number(block![2]) }).toEqual(USER_REQUEST_LIMIT);
  });
});

