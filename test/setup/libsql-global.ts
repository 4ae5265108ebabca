import type { TestProject } from "vitest/node";
import { migrateDb } from "../../db/migrate";
import { startLibsqlServer } from "../../db/server/server";

declare module "vitest" {
  export interface ProvidedContext {
    libsqlUrl: string;
  }
}

/** Starts a real local libSQL server on a free port with a fresh in-memory database and the migrations applied. */
export default async function setup(project: TestProject) {
  const server = await startLibsqlServer({ port: 0 });
  await migrateDb(server.url);
  project.provide("libsqlUrl", server.url);
  return async () => {
    await server.close();
  };
}
