import { env } from "cloudflare:workers";
import { inspectRoutes } from "hono/dev";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../edge/app";
import { loadConfig } from "../../edge/env";
import worker from "../../edge/index";
import { OPERATION_IDS } from "../../edge/routes/openapi";
import { call, ORIGIN, seedJob, signIn, type Session } from "./helpers";

interface Operation {
  operationId?: string;
  security?: unknown[];
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { description: string }>;
}

interface Answer {
  route: string;
  op: Operation;
  status: number;
  code: string | undefined;
}

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
}

describe("GET /api/openapi.json", () => {
  it("serves an OpenAPI 3.1 document covering every public route, without signing in", async () => {
    const res = await call("/api/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Doc;
    expect(doc.openapi).toBe("3.1.0");
    const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(routes).toEqual(
      expect.arrayContaining([
        "POST /api/auth/login",
        "POST /api/auth/logout",
        "GET /api/me",
        "POST /api/users",
        "POST /api/tokens",
        "GET /api/tokens",
        "DELETE /api/tokens/{id}",
        "POST /api/uploads",
        "PUT /api/uploads/{id}/parts/{n}",
        "POST /api/uploads/{id}/complete",
        "POST /api/jobs",
        "GET /api/jobs",
        "POST /api/jobs/cancel",
        "GET /api/jobs/{id}",
        "DELETE /api/jobs/{id}",
        "POST /api/jobs/{id}/cancel",
        "GET /api/jobs/{id}/download",
        "GET /api/jobs/{id}/outputs/{outputId}",
        "GET /api/jobs/{id}/thumbnail",
      ]),
    );
    expect(Object.keys(doc.paths["/api/jobs/{id}/cancel"]!.post!.responses)).toEqual(
      expect.arrayContaining(["200", "202", "404", "409"]),
    );
  });

  it("describes the Job exactly as the zod schema the API is checked against", async () => {
    const doc = (await (await call("/api/openapi.json")).json()) as Doc;
    const job = doc.components.schemas.Job!;
    expect(Object.keys(job.properties!)).toEqual([
      "id", "status", "previousStatus", "createdAt", "startedAt", "completedAt", "cancelledAt", "cancelReason",
      "cancelledBy", "expiresAt", "variationsPerVideo", "effects", "totalVariations", "completedVariations", "failedVariations",
      "cancelledVariations", "progress", "error", "downloadUrl", "thumbnailUrl", "queuePosition", "etaSeconds", "files",
    ]);
    expect(job.required).not.toContain("previousStatus");
    expect(JSON.stringify(job.properties!.status)).toContain("cancelling");
    expect(doc.components.schemas.CreateJobForm!.properties!.videos).toMatchObject({ type: "array", maxItems: 10 });
    // Request bodies are described as input: defaults make a field optional.
    expect(doc.components.schemas.CreateJobJson!.required).toEqual(["uploads"]);
  });

  it("documents every /api route the app serves, each with a unique operationId, and nothing it does not serve", async () => {
    const served = inspectRoutes(createApp())
      .filter((r) => !r.isMiddleware && r.method !== "ALL" && r.path.startsWith("/api/"))
      .map((r) => `${r.method} ${r.path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}").replace(/\/$/, "")}`);
    const doc = (await (await call("/api/openapi.json")).json()) as Doc;
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect([...new Set(served)].sort()).toEqual(documented.sort());
    const ids = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((op) => op.operationId));
    expect(ids.filter((id) => !id)).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(Object.keys(OPERATION_IDS).sort()).toEqual(documented.sort());
    expect(doc.paths["/api/health"]?.get?.operationId).toBe("getHealth");
  });
});

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

/** Calls the worker with some bindings replaced (a refusing rate limiter, an unreachable database). */
function callWith(bindings: Partial<typeof env>, path: string, init: RequestInit = {}) {
  return worker.fetch(new Request(ORIGIN + path, init), { ...env, ...bindings }, ctx);
}

/** A path of the document with its parameters filled in: `id` for every id, 1 for a part number. */
const filled = (path: string, id: string) => path.replace(/\{(\w+)\}/g, (_, name: string) => (name === "n" ? "1" : id));
/** Well-formed, and names nothing. */
const UNKNOWN_ID = "0nosuchid0";

describe("the OpenAPI document's error answers", () => {
  let doc: Doc;
  let admin: Session;
  /** Every operation as `METHOD /path`, with what the document says of it. */
  let operations: { route: string; method: string; path: string; op: Operation }[];
  const isPublic = (op: Operation) => Array.isArray(op.security) && op.security.length === 0;
  const takesJson = (op: Operation) => op.requestBody?.content["application/json"] !== undefined;
  /**
   * `route: answered S` for every answer whose status the route's document does not list, and, with `named`, for
   * every error answer whose code the description of that status does not name.
   */
  const undocumented = (answers: Answer[], opts: { named?: boolean } = {}) =>
    answers
      .filter(({ status, code, op }) => {
        const described = op.responses[String(status)];
        return !described || (opts.named && code !== undefined && !described.description.includes(code));
      })
      .map(({ route, status, code }) => `${route}: answered ${status}${code ? ` ${code}` : ""}`);
  /** The answer of one route, with its error code (if it is an error). */
  const answer = async (o: { route: string; op: Operation }, res: Response): Promise<Answer> => {
    const body = (await res.json().catch(() => null)) as { error?: { code?: string } } | null;
    return { route: o.route, op: o.op, status: res.status, code: body?.error?.code };
  };
  const asAdmin = (init: RequestInit = {}): RequestInit => ({
    ...init,
    headers: { ...(init.headers as Record<string, string>), cookie: admin.cookie, origin: ORIGIN },
  });

  beforeAll(async () => {
    doc = (await (await call("/api/openapi.json")).json()) as Doc;
    operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ route: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), path, op })),
    );
    admin = await signIn("admin");
  });

  it("lists 401 for every route behind sign-in, and every route not marked public answers 401 without credentials", async () => {
    const answers: Answer[] = [];
    for (const o of operations.filter((o) => !isPublic(o.op))) {
      answers.push(await answer(o, await call(filled(o.path, UNKNOWN_ID), { method: o.method })));
    }
    expect(answers.filter((a) => a.status !== 401).map((a) => `${a.route}: answered ${a.status}`)).toEqual([]);
    expect(undocumented(answers)).toEqual([]);
  });

  it("lists 429 for every route behind sign-in, which refuses a user over the request budget with rate_limited", async () => {
    const refuse = { limit: async () => ({ success: false }) } as unknown as RateLimit;
    const answers: Answer[] = [];
    for (const o of operations.filter((o) => !isPublic(o.op))) {
      answers.push(await answer(o, await callWith({ USER_REQUESTS: refuse }, filled(o.path, UNKNOWN_ID), asAdmin({ method: o.method }))));
    }
    expect(answers.filter((a) => a.code !== "rate_limited").map((a) => `${a.route}: answered ${a.status} ${a.code}`)).toEqual([]);
    expect(undocumented(answers, { named: true })).toEqual([]);
  });

  it("lists 503 for every route that asks the database, which answers 503 when the database is unreachable", async () => {
    const answers: Answer[] = [];
    for (const o of operations) {
      // Login asks the database only for a well-formed body.
      const login = { body: JSON.stringify({ email: admin.email, password: admin.password }), headers: { "content-type": "application/json" } };
      const init = o.route === "POST /api/auth/login" ? { method: o.method, ...login } : { method: o.method };
      answers.push(await answer(o, await callWith({ LIBSQL_URL: "http://127.0.0.1:9" }, filled(o.path, UNKNOWN_ID), asAdmin(init))));
    }
    expect(answers.filter((a) => a.status !== 503).map((a) => `${a.route}: answered ${a.status}`)).toEqual(["GET /api/openapi.json: answered 200"]);
    expect(undocumented(answers, { named: true })).toEqual([]);
  });

  it("lists 403 for every state-changing route, which refuses a cookie request from another site", async () => {
    const answers: Answer[] = [];
    for (const o of operations.filter((o) => o.method !== "GET")) {
      const res = await call(filled(o.path, UNKNOWN_ID), {
        method: o.method,
        cookie: admin.cookie,
        origin: "https://attacker.example",
        // Login checks the origin of a well-formed body only.
        json: { email: admin.email, password: admin.password },
      });
      answers.push(await answer(o, res));
    }
    expect(answers.filter((a) => a.code !== "csrf").map((a) => `${a.route}: answered ${a.status} ${a.code}`)).toEqual([]);
    expect(undocumented(answers, { named: true })).toEqual([]);
  });

  it("lists 413 for every route that takes a JSON body, which refuses one over JSON_BODY_LIMIT_BYTES", async () => {
    const limit = loadConfig(env).JSON_BODY_LIMIT_BYTES;
    const answers: Answer[] = [];
    const body = JSON.stringify({ pad: "x".repeat(limit) });
    for (const o of operations.filter((o) => takesJson(o.op))) {
      const res = await call(filled(o.path, UNKNOWN_ID), { method: o.method, cookie: admin.cookie, body, headers: { "content-type": "application/json" } });
      answers.push(await answer(o, res));
    }
    expect(answers.length).toBeGreaterThan(10);
    expect(answers.filter((a) => a.code !== "too_large").map((a) => `${a.route}: answered ${a.status} ${a.code}`)).toEqual([]);
    expect(undocumented(answers, { named: true })).toEqual([]);
  });

  it("lists the status every route with an id in its path answers to a malformed id (400 where the id is validated)", async () => {
    const answers: Answer[] = [];
    for (const o of operations.filter((o) => /\{(?!n\})\w+\}/.test(o.path))) {
      answers.push(await answer(o, await call(filled(o.path, "Not-An-Id"), { method: o.method, cookie: admin.cookie })));
    }
    expect(answers.filter((a) => a.status !== 400 && a.status !== 404).map((a) => `${a.route}: answered ${a.status}`)).toEqual([]);
    expect(answers.filter((a) => a.status === 400).length).toBeGreaterThan(8);
    expect(undocumented(answers)).toEqual([]);
  });

  it("names a paused job among the 409s of a job's download and delete, which refuse one", async () => {
    const s = await signIn();
    const job = await seedJob(s.id);
    expect((await s.call(`/api/jobs/${job.id}/pause`, { method: "POST" })).status).toBe(200);
    const download = await s.call(`/api/jobs/${job.id}/download`);
    const remove = await s.call(`/api/jobs/${job.id}`, { method: "DELETE" });
    expect([download.status, remove.status]).toEqual([409, 409]);
    const codes = [((await download.json()) as { error: { code: string } }).error.code, ((await remove.json()) as { error: { code: string } }).error.code];
    const described = [doc.paths["/api/jobs/{id}/download"]!.get!.responses["409"]!.description, doc.paths["/api/jobs/{id}"]!.delete!.responses["409"]!.description];
    for (const [i, text] of described.entries()) {
      expect(text).toContain(codes[i]);
      expect(text).toContain("paused");
    }
  });

  it("names the codes of a part's 503, a create's 429 for a twin still uploading, and a download's missing output", () => {
    const described = (path: string, method: string, status: string) => doc.paths[path]?.[method]?.responses[status]?.description ?? "(not documented)";
    expect(described("/api/uploads/{id}/parts/{n}", "put", "503")).toContain("storage_unavailable");
    expect(described("/api/jobs", "post", "429")).toContain("request_in_progress");
    expect(described("/api/jobs/{id}/download", "get", "404")).toContain("output_missing");
  });
});
