import { MARKER } from "../../runner/workdir";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { newId } from "../../db/ids";
import { BlobClient } from "../../runner/blobs";
import { signInToEdge, type ApiSession } from "./api";
import { startTestLibsql, type TestLibsqlServer } from "./libsql";
import { FAST } from "./runner";
import { freshDb } from "./seed";
import { startWranglerDev, type WranglerDev } from "./wrangler";

export interface EdgeStack {
  server: TestLibsqlServer;
  db: Db;
  libsqlUrl: string;
  edge: WranglerDev;
  runnerToken: string;
  /** Runner-side blob client (lists/puts through the edge's /internal endpoints). */
  blobs: BlobClient;
  /** A signed-in user on the edge. */
  user: ApiSession;
  /** A fresh WORK_DIR (removed by close()). */
  workDir(): Promise<string>;
  /** Runner environment for this stack (fast timings), plus overrides. */
  runnerEnv(extra?: Record<string, string>): Record<string, string>;
  /** Stops whatever work is left in the database so the next test starts from an empty queue. */
  settleLeftovers(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The real pieces a runner talks to: a local libSQL server (fresh migrated database) and `wrangler dev` serving
 * the edge (local R2), plus a signed-in user. One per test file; ~5 s to start.
 */
export async function startEdgeStack(label: string): Promise<EdgeStack> {
  const server = await startTestLibsql();
  const { db, url } = await freshDb(server, label);
  const runnerToken = `runner-token-${newId()}`;
  const edge = await startWranglerDev({ libsqlUrl: url, runnerToken });
  const user = await signInToEdge(edge.url, db);
  const blobs = new BlobClient({ edgeUrl: edge.url, token: runnerToken });
  const dirs: string[] = [];
  return {
    server,
    db,
    libsqlUrl: url,
    edge,
    runnerToken,
    blobs,
    user,
    workDir: async () => {
      const dir = await mkdtemp(join(tmpdir(), "vr-work-"));
      dirs.push(dir);
      return dir;
    },
    runnerEnv: (extra = {}) => ({
      LIBSQL_URL: url,
      EDGE_URL: edge.url,
      RUNNER_TOKEN: runnerToken,
      RUNNER_ID: `test-${newId().slice(0, 8)}`,
      ...FAST,
      ...extra,
    }),
    async settleLeftovers() {
      const now = Date.now();
      await db.batch([
        db.run(sql`UPDATE variations SET status = 'cancelled', finished_at = ${now} WHERE status IN ('queued', 'running')`),
        db.run(sql`UPDATE jobs SET status = 'cancelled', completed_at = ${now} WHERE status IN ('queued', 'processing', 'cancelling')`),
      ]);
    },
    async close() {
      await edge.close();
      await server.close();
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Files left anywhere under a directory (recursive), relative paths. */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true }))
      // The runner's own-directory marker is not a work file.
      .filter((d) => d.isFile() && d.name !== MARKER)
      .map((d) => join(d.parentPath, d.name).slice(dir.length + 1));
  } catch {
    return [];
  }
}
