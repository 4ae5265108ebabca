import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../edge/index";

describe("GET /api/health", () => {
  it("answers ok after a real round trip to the libSQL server", async () => {
    const res = await exports.default.fetch("http://edge.test/api/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, db: "ok", version: "0.1.0" });
  });

  it("answers 503 with db error when the database is unreachable", async () => {
    const deadEnv = { ...env, LIBSQL_URL: "http://127.0.0.1:9/" };
    const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const res = await worker.fetch(new Request("http://edge.test/api/health"), deadEnv, ctx);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, db: "error" });
  });

  it("answers unknown API routes with the JSON error body", async () => {
    const res = await exports.default.fetch("http://edge.test/api/nope");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: "not_found" } });
  });
});
