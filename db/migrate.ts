import { fileURLToPath } from "node:url";
import { migrate } from "drizzle-orm/libsql/migrator";
import { createDb } from "./client";

export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations", import.meta.url));

/** Applies the committed migrations; idempotent (drizzle records what it applied). */
export async function migrateDb(url: string, authToken?: string): Promise<void> {
  const db = createDb(url, { authToken, timeoutMs: 60_000 });
  try {
    await migrate(db, { migrationsFolder: MIGRATIONS_DIR });
  } finally {
    db.$client.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const url = process.env.LIBSQL_URL;
  if (!url) {
    console.error("db:migrate: set LIBSQL_URL (e.g. http://127.0.0.1:8080 for `npm run db:server`, or a libsql:// Turso URL)");
    process.exit(1);
  }
  migrateDb(url, process.env.LIBSQL_AUTH_TOKEN)
    .then(() => console.log(`db:migrate: ${url} is up to date`))
    .catch((err) => {
      console.error(`db:migrate failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    });
}
