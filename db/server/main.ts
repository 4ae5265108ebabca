// `npm run db:server`: the local libSQL server for development (see startLibsqlServer).
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { startLibsqlServer } from "./server";

const env = z
  .object({
    LIBSQL_HOST: z.string().min(1).default("127.0.0.1"),
    LIBSQL_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    LIBSQL_DATA_DIR: z.string().min(1).default(".data/libsql"),
    LIBSQL_AUTH_TOKEN: z.string().optional(),
    // Opt-in (`1`): also serve `/<name>/v2/pipeline` as separate databases in the data directory.
    LIBSQL_NAMED_DATABASES: z.enum(["0", "1"]).default("0"),
  })
  // An empty variable (`LIBSQL_AUTH_TOKEN=` in a .env file) means "unset": a generated token, default port.
  .safeParse(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== "")));

if (!env.success) {
  console.error(`db:server: invalid environment:\n${z.prettifyError(env.error)}`);
  process.exit(1);
}

const { LIBSQL_HOST, LIBSQL_PORT, LIBSQL_DATA_DIR, LIBSQL_AUTH_TOKEN, LIBSQL_NAMED_DATABASES } = env.data;
// Never without a token: any local process could otherwise read and change the databases.
const authToken = LIBSQL_AUTH_TOKEN ?? randomBytes(24).toString("base64url");
const server = await startLibsqlServer({
  host: LIBSQL_HOST,
  port: LIBSQL_PORT,
  dataDir: LIBSQL_DATA_DIR,
  authToken,
  namedDatabases: LIBSQL_NAMED_DATABASES === "1",
  log: (msg) => console.log(msg),
}).catch((err: unknown) => {
  if ((err as { code?: string }).code !== "EADDRINUSE") throw err;
  // Most often `npm start` is running: its stack already serves this port (and this data directory).
  console.error(
    `db:server: ${LIBSQL_HOST}:${LIBSQL_PORT} is already in use — is \`npm start\` (or another db:server) running? ` +
      "Its database is the one to use; for a separate server set LIBSQL_PORT and LIBSQL_DATA_DIR.",
  );
  process.exit(1);
});
console.log(
  `libsql server listening on ${server.url} (data: ${LIBSQL_DATA_DIR}, auth: bearer token${LIBSQL_AUTH_TOKEN ? " from LIBSQL_AUTH_TOKEN" : ""}` +
    `${LIBSQL_NAMED_DATABASES === "1" ? ", named databases" : ""})`,
);
if (!LIBSQL_AUTH_TOKEN) console.log(`libsql server: generated token (set LIBSQL_AUTH_TOKEN to choose one): LIBSQL_AUTH_TOKEN=${authToken}`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`libsql server: ${signal}, shutting down`);
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`libsql server: shutdown failed: ${String(err)}`);
        process.exit(1);
      },
    );
  });
}
