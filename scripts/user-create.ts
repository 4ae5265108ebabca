/**
 * `npm run user:create -- --email E --password P [--admin | --reset]`: creates an account (or, with --reset, sets a
 * new password for an existing one, ending its sessions) in the database at LIBSQL_URL
 * (local server, sqld or Turso; LIBSQL_AUTH_TOKEN when needed), or — when LIBSQL_URL is not set — in the local
 * stack's database (`npm start`'s .data/edge.env). It says which one it used. There is no public sign-up; this
 * and POST /api/users (admins) are the only ways in.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { createDb } from "../db/client";
import { AppError } from "../db/errors";
import { dbFailureMessage, NO_DB_TARGET, resolveDbTarget } from "../db/local-target";
import { passwordProblem } from "../db/passwords";
import { resetPassword } from "../db/queries/reset-password";
import { createUser } from "../db/queries/users";

const USAGE = "usage: npm run user:create -- --email E --password P [--admin | --reset]";

const Args = z.object({
  email: z.email({ error: (i) => (i.input === undefined ? "--email is missing" : "--email must be an email address") }),
  password: z.string({ error: "--password is missing" }).superRefine((pw, ctx) => {
    const problem = passwordProblem(pw);
    if (problem) ctx.addIssue({ code: "custom", message: `--password: ${problem}` });
  }),
  pepper: z.string().optional(),
  admin: z.boolean(),
  reset: z.boolean(),
  url: z.string({ error: NO_DB_TARGET }).url(`LIBSQL_URL is not a URL; ${NO_DB_TARGET}`),
  authToken: z.string().optional(),
});

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        email: { type: "string" },
        password: { type: "string" },
        admin: { type: "boolean", default: false },
        reset: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`user:create: ${err instanceof Error ? err.message : String(err)}`);
    console.error(USAGE);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    console.log("Creates an account in the database at LIBSQL_URL (+ LIBSQL_AUTH_TOKEN), or in the running local stack's.");
    console.log("--reset: sets a new password for an existing account instead (its sessions end; its API tokens stay).");
    return 0;
  }
  const target = await resolveDbTarget(env);
  // The worker's PASSWORD_PEPPER when it has one; without it the hash is unpeppered and peppered at first login.
  const pepper = env.PASSWORD_PEPPER || undefined;
  const parsed = Args.safeParse({ ...values, url: target?.url, authToken: target?.authToken, pepper });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) console.error(`user:create: ${issue.message}`);
    console.error(USAGE);
    return 2;
  }
  const { email, password, admin, reset, url, authToken, pepper: pepperOk } = parsed.data;
  if (admin && reset) {
    console.error("user:create: --reset keeps the account's role; leave out --admin");
    console.error(USAGE);
    return 2;
  }
  console.log(`user:create: database ${url} (from ${target!.source})`);
  const db = createDb(url, { authToken, timeoutMs: 15_000 });
  try {
    if (reset) {
      const user = await resetPassword(db, { email, password, pepper: pepperOk });
      console.log(`user:create: new password set for ${user.role} ${user.email} (id ${user.id}); its sessions ended`);
      return 0;
    }
    const user = await createUser(db, { email, password, role: admin ? "admin" : "user", pepper: pepperOk });
    console.log(`user:create: created ${user.role} ${user.email} (id ${user.id})`);
    return 0;
  } catch (err) {
    console.error(`user:create: ${err instanceof AppError ? err.message : `failed: ${dbFailureMessage(err, target!)}`}`);
    return 1;
  } finally {
    db.$client.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2), process.env).then((code) => process.exit(code));
}
