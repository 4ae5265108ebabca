import { fileURLToPath } from "node:url";
import { migrate } from "drizzle-orm/libsql/migrator";
import { createDb } from "./client";
import { dbFailureMessage, NO_DB_TARGET, resolveDbTarget } from "./local-target";

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
  const target = await resolveDbTarget(process.env);
  if (!target) {
    console.error(`db:migrate: ${NO_DB_TARGET}`);
    process.exit(1);
  }
  console.log(`db:migrate: database ${target.url} (from ${target.source})`);
  await migrateDb(target.url, target.authToken)
    .then(() => console.log(`db:migrate: ${target.url} is up to date`))
    .catch((err) => {
      console.error(`db:migrate failed: ${dbFailureMessage(err, target)}`);
      process.exit(1);
    });
}
