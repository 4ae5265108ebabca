import { inspectRoutes } from "hono/dev";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/app";
import { OPERATION_IDS } from "../../edge/routes/openapi";
import { call } from "./helpers";

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { operationId?: string; responses: Record<string, unknown> }>>;
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
