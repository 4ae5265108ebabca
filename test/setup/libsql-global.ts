import type { TestProject } from "vitest/node";
import { migrateDb } from "../../db/migrate";
import { startLibsqlServer } from "../../db/server/server";

declare module "vitest" {
  export interface ProvidedContext {
    libsqlUrl: string;
  }
}

/** Starts a real local libSQL server on a free port with a fresh database (in a temporary directory) and the migrations applied. */
export default async function setup(project: TestProject) {
  // Token-less: the workerd project reads LIBSQL_URL alone (vitest.config.ts).
  const server = await startLibsqlServer({ port: 0, insecureNoAuthForTests: true, namedDatabases: true });
  await migrateDb(server.url);
  project.provide("libsqlUrl", server.url);
  return async () => {
    await server.close();
  };
}
