import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createClient as createNodeClient } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { eq, sql } from "drizzle-orm";
import { drizzle as drizzleNode } from "drizzle-orm/libsql";
import { drizzle as drizzleWeb } from "drizzle-orm/libsql/web";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { describe, expect, it } from "vitest";
import { migrateDb } from "../../../db/migrate";
import { useTestLibsql } from "../../helpers/libsql";

const run = promisify(execFile);

const server = useTestLibsql();

const items = sqliteTable("items", {
  id: integer().primaryKey({ autoIncrement: true }),
  name: text().notNull().unique(),
  qty: integer().notNull().default(0),
});

const drivers = [
  ["drizzle-orm/libsql", (url: string) => drizzleNode(createNodeClient({ url }), { casing: "snake_case" })],
  ["drizzle-orm/libsql/web", (url: string) => drizzleWeb(createWebClient({ url }), { casing: "snake_case" })],
] as const;

describe.each(drivers)("%s against the local server", (driver, open) => {
  type Db = ReturnType<typeof open>;
  let n = 0;
  async function freshDb(): Promise<Db> {
    const d = open(server.dbUrl(`drizzle_${driver.endsWith("web") ? "web" : "node"}_${++n}`));
    await d.run(sql`CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL DEFAULT 0)`);
    return d;
  }
  const all = (d: Db) => d.select({ name: items.name, qty: items.qty }).from(items).orderBy(items.id);

  it("runs db.batch atomically: all statements commit together", async () => {
    const d = await freshDb();
    const [inserted, , counted] = await d.batch([
      d.insert(items).values({ name: "a", qty: 1 }).returning({ id: items.id }),
      d.update(items).set({ qty: 5 }).where(eq(items.name, "a")),
      d.select({ n: sql<number>`count(*)` }).from(items),
    ]);
    expect(inserted).toEqual([{ id: 1 }]);
    expect(counted).toEqual([{ n: 1 }]);
    expect(await all(d)).toEqual([{ name: "a", qty: 5 }]);
    d.$client.close();
  });

  it("runs db.batch atomically: a failing statement leaves nothing behind", async () => {
    const d = await freshDb();
    await expect(
      d.batch([d.insert(items).values({ name: "b" }), d.insert(items).values({ name: "b" })]),
    ).rejects.toThrow(/UNIQUE/);
    expect(await all(d)).toEqual([]);
    d.$client.close();
  });

  it("commits db.transaction and rolls it back on tx.rollback() or a thrown error", async () => {
    const d = await freshDb();
    await d.transaction(async (tx) => {
      await tx.insert(items).values({ name: "kept" });
      const [row] = await tx.select().from(items);
      await tx.update(items).set({ qty: (row?.qty ?? 0) + 1 });
    });
    await expect(
      d.transaction(async (tx) => {
        await tx.insert(items).values({ name: "rolled back" });
        tx.rollback();
      }),
    ).rejects.toThrow(/Rollback/);
    await expect(
      d.transaction(async (tx) => {
        await tx.insert(items).values({ name: "thrown away" });
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(await all(d)).toEqual([{ name: "kept", qty: 1 }]);
    d.$client.close();
  });

  it("rolls back a nested transaction (savepoint) while the outer one commits", async () => {
    const d = await freshDb();
    await d.transaction(async (tx) => {
      await tx.insert(items).values({ name: "outer" });
      await expect(
        tx.transaction(async (inner) => {
          await inner.insert(items).values({ name: "inner" });
          inner.rollback();
        }),
      ).rejects.toThrow(/Rollback/);
    });
    expect(await all(d)).toEqual([{ name: "outer", qty: 0 }]);
    d.$client.close();
  });

  it("exposes the constraint code of a failed query as the LibsqlError cause", async () => {
    const d = await freshDb();
    await d.insert(items).values({ name: "dup" });
    const err = await d.insert(items).values({ name: "dup" }).catch((e: unknown) => e);
    expect((err as Error).cause).toMatchObject({ code: "SQLITE_CONSTRAINT", message: expect.stringContaining("UNIQUE constraint failed") });
    d.$client.close();
  });
});

describe("migrations against the local server", () => {
  const tablesOf = async (url: string) => {
    const client = createNodeClient({ url });
    try {
      const rs = await client.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name");
      return rs.rows.map((r) => String(r.name));
    } finally {
      client.close();
    }
  };
  const appTables = [
    "api_tokens", "ingests", "jobs", "login_devices", "login_failures", "multipart_uploads", "runners", "sessions", "sources", "sweep_cursors", "upload_parts", "uploads", "users",
    "variations", "webhook_deliveries", "webhooks",
  ];

  it("applies the committed migrations with drizzle-kit migrate, and a second run changes nothing", { timeout: 120_000 }, async () => {
    const url = server.dbUrl("kit");
    // drizzle-kit rejects an empty authToken, so the variable must be absent rather than "".
    const { LIBSQL_AUTH_TOKEN: _, ...inherited } = process.env;
    const env = { ...inherited, LIBSQL_URL: url };
    const first = await run("npx", ["drizzle-kit", "migrate"], { cwd: process.cwd(), env });
    expect(first.stdout + first.stderr).toMatch(/migrations applied successfully/i);
    expect(await tablesOf(url)).toEqual(expect.arrayContaining(appTables));
    const client = createNodeClient({ url });
    const applied = async () => (await client.execute("SELECT count(*) AS n FROM __drizzle_migrations")).rows[0]?.n;
    const before = await applied();
    expect(before).toBeGreaterThan(0);
    await run("npx", ["drizzle-kit", "migrate"], { cwd: process.cwd(), env });
    expect(await applied()).toBe(before);
    client.close();
  });

  it("applies the committed migrations with migrateDb, idempotently", async () => {
    const url = server.dbUrl("migrate_db");
    await migrateDb(url);
    await migrateDb(url);
    expect(await tablesOf(url)).toEqual([...appTables, "__drizzle_migrations"].sort());
  });
});
