import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "../../db/client";
import { loggable } from "../../db/errors";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(async () => {
  await server?.close();
});

describe("loggable", () => {
  it("keeps a failed query's SQL and the database's reason but not its bound values (secrets, hashes)", async () => {
    const db = createDb(server.dbUrl("errors_loggable"));
    const err = await db.run(sql`INSERT INTO no_such_table (secret) VALUES (${"whsec_do-not-log-me"})`).catch((e: unknown) => e);
    db.$client.close();
    expect(String((err as Error).message)).toContain("whsec_do-not-log-me"); // what a plain console.error(err) would print
    const line = loggable(err);
    expect(line).not.toContain("whsec_do-not-log-me");
    expect(line).toContain("INSERT INTO no_such_table");
    expect(line).toMatch(/no such table/i);
  });

  it("gives other errors as name and message, causes included", () => {
    expect(loggable(new TypeError("boom", { cause: new Error("underneath") }))).toBe("TypeError: boom ← caused by Error: underneath");
    expect(loggable("plain")).toBe("plain");
  });
});
