import { createClient } from "@libsql/client";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "../../db/client";
import { DbCallError, retryDb } from "../../runner/db-retry";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";

describe("retryDb", () => {
  let server: TestLibsqlServer;
  beforeAll(async () => {
    server = await startTestLibsql({ busyTimeoutMs: 100, txTtlMs: 60_000 });
  });
  afterAll(() => server.close());

  it("records a write that was refused while another writer held the lock, once the lock is free", async () => {
    const url = server.dbUrl(`retry_busy_${Date.now()}`);
    const holder = createClient({ url, intMode: "number" });
    const db = createDb(url);
    await holder.execute("CREATE TABLE settled (id TEXT PRIMARY KEY)");
    // Another writer (a cron batch, another runner's transaction) holds the write lock past the busy timeout.
    const tx = await holder.transaction("write");
    await tx.execute("INSERT INTO settled VALUES ('other')");
    const errors: unknown[] = [];
    const done = await retryDb(async () => {
      try {
        return await db.run(sql`INSERT INTO settled VALUES ('mine')`);
      } catch (err) {
        errors.push(err);
        // The lock is given back only after this write was refused: the retry, not luck, must record it.
        if (errors.length === 1) await tx.commit();
        throw err;
      }
    });
    expect(done).toBeDefined();
    expect(errors).toHaveLength(1);
    expect(String((errors[0] as Error).message) + String((errors[0] as { cause?: Error }).cause?.message)).toMatch(/SQLITE_BUSY/);
    const rows = await holder.execute("SELECT id FROM settled ORDER BY id");
    expect(rows.rows.map((r) => r.id)).toEqual(["mine", "other"]);
    holder.close();
  });

  it("does not retry a statement the database refused as wrong (a constraint): that is the caller's error", async () => {
    const url = server.dbUrl(`retry_constraint_${Date.now()}`);
    const db = createDb(url);
    await db.run(sql`CREATE TABLE settled (id TEXT PRIMARY KEY)`);
    await db.run(sql`INSERT INTO settled VALUES ('mine')`);
    let calls = 0;
    await expect(
      retryDb(() => {
        calls++;
        return db.run(sql`INSERT INTO settled VALUES ('mine')`);
      }),
    ).rejects.toBeInstanceOf(DbCallError);
    expect(calls).toBe(1);
  });
});
