import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamedVideoForm } from "../helpers/forms";
import { signInToEdge, type ApiSession } from "../helpers/api";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";
import { freshDb, seedJob } from "../helpers/seed";
import { startWranglerDev, type WranglerDev } from "../helpers/wrangler";
import type { Db } from "../../db/client";

// workerd serves concurrent requests from one isolate. Anything shared between requests that parks work for
// later (a client-wide concurrency limiter, a pooled connection) makes one request wait on I/O started by
// another, which the runtime cancels as "code had hung" (a 500 with a plain-text body).

let server: TestLibsqlServer;
let edge: WranglerDev;
let dir: string;
let db: Db;
let user: ApiSession;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-edge-concurrency-"));
  server = await startTestLibsql();
  const fresh = await freshDb(server, "edge_concurrency");
  db = fresh.db;
  // R2 inside our own temp dir, removed afterwards (the 256 MiB upload must not pile up in /tmp).
  edge = await startWranglerDev({ libsqlUrl: fresh.url, runnerToken: "edge-concurrency-runner-token-0123", persistTo: join(dir, "r2") });
  user = await signInToEdge(edge.url, db);
}, 120_000);
afterAll(async () => {
  await edge?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the edge under concurrent requests from one client", () => {
  it("answers 40 simultaneous cancels that each wait for runners with JSON, never a runtime 500", async () => {
    // Processing jobs whose running variation belongs to a runner that never reacts: each cancel request waits its
    // full 5 s, polling the database, so 40 of them keep many database round trips in flight at once.
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const job = await seedJob(db, { sources: [{ objectKey: `sources/none/${i}.mp4` }], status: "processing", userId: user.userId, thumbnailKey: "x" });
      await db.run(sql`UPDATE variations SET status = 'running', runner_id = 'absent', lease_expires_at = ${Date.now() + 600_000}
        WHERE job_id = ${job.jobId}`);
      ids.push(job.jobId);
    }
    const replies = await Promise.all(
      ids.map(async (id) => {
        const res = await user.call(`/api/jobs/${id}/cancel`, { method: "POST" });
        const text = await res.text();
        return { status: res.status, json: text.startsWith("{"), text: text.slice(0, 120) };
      }),
    );
    const bad = replies.filter((r) => r.status !== 202 || !r.json);
    expect(bad).toEqual([]);
  });

  it("creates a job from a 256 MiB upload streamed at full speed, longer than the database's idle keep-alive", async () => {
    // The request talks to the database at its start (session) and again after the body (createJob). workerd
    // pooled that first connection and, busy streaming, can reuse it after the libSQL server closed it for being
    // idle (Node's default: 5 s) — "Network connection lost" → 503 db_unavailable at the very end of an upload.
    // A user of its own: the 40 jobs above are still cancelling and count against their owner's active-jobs limit.
    const uploader = await signInToEdge(edge.url, db);
    const t0 = Date.now();
    const res = await uploader.call("/api/jobs", { method: "POST", ...streamedVideoForm(256) } as RequestInit);
    const text = await res.text();
    console.log(`[edge-concurrency] 256 MiB upload: ${res.status} after ${Date.now() - t0} ms`);
    expect({ status: res.status, text: text.slice(0, 200) }).toMatchObject({ status: 202 });
  });
});
