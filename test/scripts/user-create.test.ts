import { execa } from "execa";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "../../db/client";
import { migrateDb } from "../../db/migrate";
import { verifyPassword } from "../../db/passwords";
import { findUserByEmail } from "../../db/queries/users";
import { apiTokens, loginFailures, sessions } from "../../db/schema";
import { newId } from "../../db/ids";
import { eq } from "drizzle-orm";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";
import { freePort } from "../helpers/ports";
import { tempDirs } from "../helpers/tmp";

const root = fileURLToPath(new URL("../..", import.meta.url));
let server: TestLibsqlServer;
let url: string;

beforeAll(async () => {
  server = await startTestLibsql({ authToken: "user-create-secret" });
  url = server.dbUrl("usercreate");
  await migrateDb(url, "user-create-secret");
});
afterAll(async () => {
  await server.close();
  await dirs.cleanup();
});
const dirs = tempDirs("vr-user-create");

function run(args: string[], env: Record<string, string> = {}) {
  return execa("npm", ["run", "--silent", "user:create", "--", ...args], {
    cwd: root,
    reject: false,
    env: { LIBSQL_URL: url, LIBSQL_AUTH_TOKEN: "user-create-secret", ...env },
  });
}

describe("npm run user:create", () => {
  it("creates a user with a hashed password against the given LIBSQL_URL (with its auth token)", async () => {
    const res = await run(["--email", "Person@Example.com", "--password", "s3cret-passphrase"]);
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stdout).toContain("created user person@example.com");
    const db = createDb(url, { authToken: "user-create-secret" });
    const row = await findUserByEmail(db, "person@example.com");
    expect(row?.role).toBe("user");
    expect(row?.passwordHash).not.toContain("s3cret-passphrase");
    expect(await verifyPassword("s3cret-passphrase", row!.passwordHash)).toBe(true);
    db.$client.close();
  });

  it("creates an admin with --admin", async () => {
    const res = await run(["--email", "boss@example.com", "--password", "s3cret-passphrase", "--admin"]);
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stdout).toContain("created admin boss@example.com");
  });

  it("sets a new password for an existing account with --reset: its sessions end, its login lock lifts, its tokens stay", async () => {
    expect((await run(["--email", "forgot@example.com", "--password", "first-passphrase", "--admin"])).exitCode).toBe(0);
    const db = createDb(url, { authToken: "user-create-secret" });
    try {
      const user = (await findUserByEmail(db, "forgot@example.com"))!;
      await db.insert(sessions).values({ id: newId(), tokenHash: newId(), userId: user.id, createdAt: 1, lastSeenAt: 1, expiresAt: Date.now() + 3600_000 });
      await db.insert(apiTokens).values({ id: newId(), userId: user.id, name: "ci", tokenHash: newId(), scope: "full", createdAt: 1 });
      await db.insert(loginFailures).values({ key: "account:forgot@example.com", attempts: 9, lockedUntil: Date.now() + 900_000, updatedAt: Date.now() });

      const res = await run(["--email", "Forgot@Example.com", "--password", "second-passphrase", "--reset"]);
      expect(res.exitCode, res.stderr).toBe(0);
      expect(res.stdout).toContain("new password set for admin forgot@example.com");
      const after = (await findUserByEmail(db, "forgot@example.com"))!;
      expect(await verifyPassword("second-passphrase", after.passwordHash)).toBe(true);
      expect(after.role).toBe("admin");
      expect(await db.select().from(sessions).where(eq(sessions.userId, user.id))).toEqual([]);
      expect(await db.select().from(loginFailures).where(eq(loginFailures.key, "account:forgot@example.com"))).toEqual([]);
      expect(await db.select().from(apiTokens).where(eq(apiTokens.userId, user.id))).toHaveLength(1);
    } finally {
      db.$client.close();
    }
    const unknown = await run(["--email", "nobody@example.com", "--password", "second-passphrase", "--reset"]);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain("No account for nobody@example.com");
    const both = await run(["--email", "forgot@example.com", "--password", "second-passphrase", "--reset", "--admin"]);
    expect(both.exitCode).toBe(2);
  });

  it("exits 1 with a readable message when the email is taken", async () => {
    await run(["--email", "twice@example.com", "--password", "s3cret-passphrase"]);
    const res = await run(["--email", "twice@example.com", "--password", "s3cret-passphrase"]);
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toContain("already exists");
  });

  it("exits 2 with usage for missing or bad arguments and a missing LIBSQL_URL", async () => {
    const missing = await run(["--email", "x@example.com"]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("usage:");
    const short = await run(["--email", "x@example.com", "--password", "short"]);
    expect(short.exitCode).toBe(2);
    expect(short.stderr).toContain("at least 12");
    // No LIBSQL_URL and no local stack (a data dir without edge.env).
    const noUrl = await run(["--email", "x@example.com", "--password", "long-enough-pw"], { LIBSQL_URL: "", DATA_DIR: await dirs.make() });
    expect(noUrl.exitCode).toBe(2);
    expect(noUrl.stderr).toContain("set LIBSQL_URL");
    expect(noUrl.stderr).toContain("npm start");
  });

  it("uses the local stack's database from its data dir when LIBSQL_URL is not set, and says so", async () => {
    const dataDir = await dirs.make();
    await writeFile(join(dataDir, "edge.env"), `LIBSQL_URL=${url}\nLIBSQL_AUTH_TOKEN=user-create-secret\nRUNNER_TOKEN=x\n`, { mode: 0o600 });
    const res = await run(["--email", "local@example.com", "--password", "s3cret-passphrase"], { LIBSQL_URL: "", LIBSQL_AUTH_TOKEN: "", DATA_DIR: dataDir });
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stdout).toContain(`database ${url} (from the local stack (${join(dataDir, "edge.env")}))`);
    expect(res.stdout).toContain("created user local@example.com");
  });

  it("migrates the local stack's database with npm run db:migrate when LIBSQL_URL is not set", async () => {
    const dataDir = await dirs.make();
    await writeFile(join(dataDir, "edge.env"), `LIBSQL_URL=${url}\nLIBSQL_AUTH_TOKEN=user-create-secret\n`, { mode: 0o600 });
    const res = await execa("npm", ["run", "--silent", "db:migrate"], {
      cwd: root,
      reject: false,
      env: { LIBSQL_URL: "", LIBSQL_AUTH_TOKEN: "", DATA_DIR: dataDir },
    });
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stdout).toContain(`is up to date`);
    expect(res.stdout).toContain("from the local stack");
  });

  it("exits 1 when the auth token is wrong, showing neither the statement nor the password hash", async () => {
    const res = await run(["--email", "y@example.com", "--password", "long-enough-pw"], { LIBSQL_AUTH_TOKEN: "nope" });
    expect(res.exitCode).toBe(1);
    expect(res.stderr).not.toMatch(/insert into|pbkdf2|params:/i);
  });

  it("says the database cannot be reached when it is down (and prints no statement or hash), as does db:migrate", async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const res = await run(["--email", "z@example.com", "--password", "long-enough-pw"], { LIBSQL_URL: down });
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toContain(`cannot reach the database at ${down}`);
    expect(res.stderr).not.toMatch(/insert into|pbkdf2|params:/i);
    const migrate = await execa("npm", ["run", "--silent", "db:migrate"], { cwd: root, reject: false, env: { LIBSQL_URL: down } });
    expect(migrate.exitCode).toBe(1);
    expect(migrate.stderr).toContain(`cannot reach the database at ${down}`);
    expect(migrate.stderr).not.toMatch(/create table/i);
  });

  it("prints its usage for --help and -h (exit 0), and names a missing option", async () => {
    for (const flag of ["--help", "-h"]) {
      const res = await run([flag]);
      expect(res.exitCode).toBe(0);
      expect(res.stdout).toContain("usage: npm run user:create -- --email E --password P [--admin | --reset]");
    }
    const noPassword = await run(["--email", "x@example.com"]);
    expect(noPassword.exitCode).toBe(2);
    expect(noPassword.stderr).toContain("--password is missing");
  });
});
