// `npm run db:server`: the local libSQL server for development (see startLibsqlServer).
import { z } from "zod";
import { startLibsqlServer } from "./server";

const env = z
  .object({
    LIBSQL_HOST: z.string().min(1).default("127.0.0.1"),
    LIBSQL_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    LIBSQL_DATA_DIR: z.string().min(1).default(".data/libsql"),
    LIBSQL_AUTH_TOKEN: z.string().optional(),
  })
  // An empty variable (`LIBSQL_AUTH_TOKEN=` in a .env file) means "unset": no auth, default port.
  .safeParse(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== "")));

if (!env.success) {
  console.error(`db:server: invalid environment:\n${z.prettifyError(env.error)}`);
  process.exit(1);
}

const { LIBSQL_HOST, LIBSQL_PORT, LIBSQL_DATA_DIR, LIBSQL_AUTH_TOKEN } = env.data;
const server = await startLibsqlServer({
  host: LIBSQL_HOST,
  port: LIBSQL_PORT,
  dataDir: LIBSQL_DATA_DIR,
  authToken: LIBSQL_AUTH_TOKEN,
  log: (msg) => console.log(msg),
});
console.log(
  `libsql server listening on ${server.url} (data: ${LIBSQL_DATA_DIR}, auth: ${LIBSQL_AUTH_TOKEN ? "bearer token" : "none"})`,
);

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
