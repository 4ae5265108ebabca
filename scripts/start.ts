import { z } from "zod";
import { startStack } from "./stack";

const Env = z.object({
  HOST: z.string().default("127.0.0.1"),
  PORT: z.coerce.number().int().min(1).max(65535).default(8787),
  LIBSQL_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  METRICS_PORT: z.coerce.number().int().min(1).max(65535).default(9464),
  DATA_DIR: z.string().default(".data"),
  ADMIN_EMAIL: z.string().email().default("admin@example.com"),
  RUNNERS: z.coerce.number().int().min(0).max(8).default(1),
  CRON_EVERY_MS: z.coerce.number().int().min(0).default(60_000),
});

const parsed = Env.safeParse(process.env);
if (!parsed.success) {
  console.error("npm start: bad configuration:\n" + parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n"));
  process.exit(1);
}
const env = parsed.data;

const stack = await startStack({
  host: env.HOST,
  edgePort: env.PORT,
  libsqlPort: env.LIBSQL_PORT,
  metricsPort: env.METRICS_PORT,
  dataDir: env.DATA_DIR,
  adminEmail: env.ADMIN_EMAIL,
  runners: env.RUNNERS,
  cronEveryMs: env.CRON_EVERY_MS,
  log: (line) => console.log(line),
}).catch((err: unknown) => {
  console.error(`npm start failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

console.log("");
console.log(`Video Refresher is running at ${stack.edgeUrl}`);
if (stack.admin) {
  console.log(`Admin account (shown once, stored hashed): ${stack.admin.email} / ${stack.admin.password}`);
} else {
  console.log("Admin account: created on the first run (see that run's output; lost its password? `npm run user:create -- --email E --password P --reset`).");
}
console.log(`libSQL server: ${stack.libsqlUrl} · stack pids: ${JSON.stringify(stack.pids)}`);
console.log("Press Ctrl-C to stop.");

let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${sig}: stopping the stack…`);
    stack.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`npm start: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  });
}
