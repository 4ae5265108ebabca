import { defineConfig } from "drizzle-kit";

// `drizzle-kit generate` needs no database; `drizzle-kit migrate` reads LIBSQL_URL (local server, Turso or sqld).
export default defineConfig({
  dialect: "turso",
  schema: "./db/schema/index.ts",
  out: "./db/migrations",
  casing: "snake_case",
  dbCredentials: {
    url: process.env.LIBSQL_URL ?? "http://127.0.0.1:8080",
    authToken: process.env.LIBSQL_AUTH_TOKEN || undefined,
  },
});
