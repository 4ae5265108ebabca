import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createDb } from "../db/client";
import { migrateDb } from "../db/migrate";
import { generatePassword } from "../db/passwords";
import { countUsers, createUser } from "../db/queries/users";
import { delay } from "../runner/delay";
import { signalGroup, stopProcessGroup } from "../runner/process-group";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface StackOptions {
  host: string;
  edgePort: number;
  libsqlPort: number;
  metricsPort: number;
  dataDir: string;
  adminEmail: string;
  /** Runner processes to start (the product default is one). */
  runners: number;
  /** Extra environment for the runners (tests shorten POLL_MS etc.). */
  runnerEnv?: Record<string, string>;
  /** Fire the Cron Trigger through wrangler's /__scheduled every this many ms (0 = never); production cron is 1 min. */
  cronEveryMs: number;
  /** Serve `/<name>/v2/pipeline` databases besides the main one (the benchmarks use throwaway ones). */
  namedDatabases?: boolean;
  /** Extra edge variables (e.g. per-user limits raised for a drill that plays many users' worth of jobs). */
  edgeVars?: Record<string, string>;
  /**
   * Another wrangler.toml for the edge (tests: test/helpers/wrangler.ts `testEdgeConfig`, which skips the UI build
   * and serves a private copy of the assets, so a UI rebuild elsewhere in the checkout cannot reload it mid-test).
   */
  wranglerConfig?: string;
  log: (line: string) => void;
}

export interface Stack {
  edgeUrl: string;
  libsqlUrl: string;
  libsqlAuthToken: string;
  runnerToken: string;
  /** Set only on the run that created the admin account. */
  admin?: { email: string; password: string };
  /** Process ids of the children, each the leader of its own process group (`db` changes on `startDb`). */
  pids: Record<string, number>;
  /**
   * Stops only the libSQL server (fault drills: the database going away mid-job). SIGTERM is a clean shutdown,
   * SIGKILL a crash. The edge and the runners keep running.
   */
  stopDb(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts the libSQL server again on the same port and data directory, and waits until it answers. */
  startDb(): Promise<void>;
  stop(): Promise<void>;
}

interface Secrets {
  runnerToken: string;
  libsqlAuthToken: string;
}

/** Local secrets are generated once per data dir and kept there (0600), never in the repo. */
async function loadSecrets(dataDir: string): Promise<Secrets> {
  const file = join(dataDir, "secrets.json");
  if (existsSync(file)) return JSON.parse(await readFile(file, "utf8")) as Secrets;
  const secrets = {
    runnerToken: randomBytes(32).toString("base64url"),
    libsqlAuthToken: randomBytes(32).toString("base64url"),
  };
  await writeFile(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  await chmod(file, 0o600);
  return secrets;
}

/**
 * Processes of a group that are still running, read from /proc (no `ps`: slim images lack procps). Zombies do not
 * count: an orphaned workerd is reparented to PID 1, which in some containers never reaps it, yet it holds no port
 * and does no work.
 */
export function liveGroupMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    // No /proc (macOS): whether anything of the group can still be signalled, zombies included.
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch {
      return [];
    }
  }
  const members: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch (err) {
      // Gone meanwhile is gone; any other failure must not pass for "not running".
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ESRCH") continue;
      throw err;
    }
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so the fields count from its last ")".
    const [state, , group] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(group) === pgid && state !== "Z") members.push(Number(name));
  }
  return members;
}

/**
 * Stops groups of children one group after another, the members of a group together. A child whose stop fails
 * skips nothing: the rest of its group and every later group are still stopped (a skipped one would keep running
 * and hold its port), and then the failures are thrown together, each naming its child.
 */
export async function stopInOrder(groups: { name: string; stop(): Promise<void> }[][]): Promise<void> {
  const failures: string[] = [];
  for (const group of groups) {
    const results = await Promise.allSettled(group.map((c) => c.stop()));
    results.forEach((r, i) => {
      if (r.status === "rejected") failures.push(`${group[i]!.name}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`);
    });
  }
  if (failures.length > 0) throw new Error(`could not stop every child of the stack (${failures.join("; ")})`);
}

/** How many of a child's last output lines an error about it quotes. */
const TAIL_LINES = 12;

class Child {
  readonly exited: Promise<number | null>;
  /** Resolves once the child has exited and its output has been read to the end. */
  readonly closed: Promise<void>;
  private readonly last: string[] = [];
  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    log: (line: string) => void,
  ) {
    for (const stream of [proc.stdout, proc.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on("line", (line) => {
        this.last.push(line);
        if (this.last.length > TAIL_LINES) this.last.shift();
        log(`[${name}] ${line}`);
      });
    }
    this.exited = new Promise((res) => proc.once("exit", (code, signal) => res(code ?? (signal ? -1 : null))));
    this.closed = new Promise((res) => proc.once("close", () => res()));
  }

  /** Its last output lines, indented, for an error saying why it did not start. */
  tail(): string {
    return this.last.map((line) => `  ${line}`).join("\n");
  }

  /** "exited with code 1" / "was killed by SIGKILL". */
  get how(): string {
    return this.proc.signalCode ? `was killed by ${this.proc.signalCode}` : `exited with code ${this.proc.exitCode}`;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Signals the whole process group: wrangler's workerd and any grandchildren go too. */
  signal(sig: NodeJS.Signals): void {
    signalGroup(this.proc.pid!, sig);
  }

  async stop(graceMs: number): Promise<void> {
    if (this.running) await stopProcessGroup(this.proc.pid!, this.exited, graceMs);
    else await this.exited;
    // The leader may exit before its group (workerd under wrangler): make sure nothing of the group survives.
    this.signal("SIGKILL");
    for (let i = 0; i < 50 && liveGroupMembers(this.proc.pid!).length > 0; i++) await delay(100);
  }
}

function spawnChild(name: string, args: string[], env: Record<string, string>, log: (l: string) => void): Child {
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  return new Child(name, proc, log);
}

/**
 * Polls `probe` until it holds. A child that exits first fails this at once, and either failure quotes the child's
 * last lines: they say why (a runner's "Invalid runner configuration: FFMPEG_PATH …").
 */
async function waitFor(what: string, child: Child, probe: (signal: AbortSignal) => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!child.running) {
      // Its last words may still be in the pipe.
      await Promise.race([child.closed, delay(2_000)]);
      throw new Error(`${what} ${child.how} before it was ready${child.tail() ? `:\n${child.tail()}` : ""}`);
    }
    // Each probe bounded too: a port that takes the connection and never answers must not hold the start past its limit.
    if (await probe(AbortSignal.timeout(Math.max(1, Math.min(5_000, deadline - Date.now())))).catch(() => false)) return;
    await delay(200);
  }
  throw new Error(`${what} was not ready within ${timeoutMs / 1000} s${child.tail() ? `; its last lines:\n${child.tail()}` : ""}`);
}

/**
 * Starts the whole local stack: libSQL server on the data dir, migrations, admin seed, `wrangler dev` with R2
 * persisted in the data dir, and the runner(s). Every child runs in its own process group so `stop()` leaves
 * nothing behind.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const dataDir = resolve(opts.dataDir);
  await mkdir(join(dataDir, "libsql"), { recursive: true });
  await mkdir(join(dataDir, "runner"), { recursive: true });
  const secrets = await loadSecrets(dataDir);
  const libsqlUrl = `http://${opts.host}:${opts.libsqlPort}`;
  const edgeUrl = `http://${opts.host}:${opts.edgePort}`;
  const children: Child[] = [];
  const pids: Record<string, number> = {};
  const log = opts.log;

  let cronTimer: NodeJS.Timeout | undefined;
  const stop = async () => {
    clearInterval(cronTimer);
    const stopping = (c: Child) => ({ name: c.name, stop: () => c.stop(c.name.startsWith("runner") ? 12_000 : 5_000) });
    // Runners first (they hand work back through the database), then the edge, then the database.
    await stopInOrder([
      children.filter((c) => c.name.startsWith("runner")).map(stopping),
      children.filter((c) => c.name === "edge").map(stopping),
      children.filter((c) => c.name === "db").map(stopping),
    ]);
  };

  const startDb = async () => {
    const old = children.findIndex((c) => c.name === "db");
    if (old >= 0 && children[old]!.running) throw new Error("the libSQL server is already running");
    if (old >= 0) children.splice(old, 1);
    const db = spawnChild(
      "db",
      ["--import", "tsx", "db/server/main.ts"],
      {
        LIBSQL_HOST: opts.host,
        LIBSQL_PORT: String(opts.libsqlPort),
        LIBSQL_DATA_DIR: join(dataDir, "libsql"),
        LIBSQL_AUTH_TOKEN: secrets.libsqlAuthToken,
        ...(opts.namedDatabases ? { LIBSQL_NAMED_DATABASES: "1" } : {}),
      },
      log,
    );
    children.push(db);
    pids.db = db.proc.pid!;
    await waitFor("libSQL server", db, async (signal) => (await fetch(`${libsqlUrl}/health`, { signal })).ok, 30_000);
  };
  const stopDb = async (signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    const db = children.find((c) => c.name === "db");
    if (!db?.running) return;
    if (signal === "SIGKILL") db.signal("SIGKILL");
    await db.stop(5_000);
  };

  try {
    await startDb();
    await migrateDb(libsqlUrl, secrets.libsqlAuthToken);

    let admin: Stack["admin"];
    const client = createDb(libsqlUrl, { authToken: secrets.libsqlAuthToken });
    try {
      if ((await countUsers(client)) === 0) {
        admin = { email: opts.adminEmail, password: generatePassword() };
        await createUser(client, { ...admin, role: "admin" });
      }
    } finally {
      client.$client.close();
    }

    const edgeEnvFile = join(dataDir, "edge.env");
    await writeFile(
      edgeEnvFile,
      `LIBSQL_URL=${libsqlUrl}\nLIBSQL_AUTH_TOKEN=${secrets.libsqlAuthToken}\nRUNNER_TOKEN=${secrets.runnerToken}\n` +
        // Local development: webhooks may target a receiver on this machine (http://127.0.0.1:…); never in production.
        Object.entries({ WEBHOOKS_ALLOW_LOCAL_HTTP: "1", ...opts.edgeVars }).map(([k, v]) => `${k}=${v}\n`).join(""),
      { mode: 0o600 },
    );
    // What `npm run runner` started beside this stack connects with (runner/local-stack.ts).
    await writeFile(
      join(dataDir, "runner.env"),
      `LIBSQL_URL=${libsqlUrl}\nLIBSQL_AUTH_TOKEN=${secrets.libsqlAuthToken}\nEDGE_URL=${edgeUrl}\nRUNNER_TOKEN=${secrets.runnerToken}\n`,
      { mode: 0o600 },
    );
    const edge = spawnChild(
      "edge",
      [
        join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
        "dev",
        ...(opts.wranglerConfig ? ["--config", opts.wranglerConfig] : []),
        "--ip", opts.host,
        "--port", String(opts.edgePort),
        "--inspector-port", "0",
        "--persist-to", join(dataDir, "wrangler"),
        "--test-scheduled",
        "--show-interactive-dev-session=false",
        // Secrets go through a 0600 file, not argv, so `ps` does not show them.
        "--env-file", edgeEnvFile,
      ],
      { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", CI: "true" },
      log,
    );
    children.push(edge);
    // With the real wrangler.toml, wrangler dev builds the UI (tsc) twice before it answers: 30-40 s on 2 cores,
    // more when they are shared.
    await waitFor("wrangler dev", edge, async (signal) => (await fetch(`${edgeUrl}/api/health`, { signal })).status === 200, 100_000);

    const runners: Promise<void>[] = [];
    for (let i = 0; i < opts.runners; i++) {
      const env = {
        LIBSQL_URL: libsqlUrl,
        LIBSQL_AUTH_TOKEN: secrets.libsqlAuthToken,
        EDGE_URL: edgeUrl,
        RUNNER_TOKEN: secrets.runnerToken,
        WORK_DIR: join(dataDir, "runner", String(i + 1)),
        METRICS_PORT: String(opts.metricsPort + i),
        ...opts.runnerEnv,
      };
      const runner = spawnChild(opts.runners === 1 ? "runner" : `runner-${i + 1}`, ["--import", "tsx", "runner/main.ts"], env, log);
      children.push(runner);
      // Healthy: it reached the database and the edge did not refuse its token. A runner that cannot start (no
      // FFmpeg, a bad setting) exits at once with the reason, which must not be followed by "Video Refresher is running".
      const healthz = `http://127.0.0.1:${env.METRICS_PORT}/healthz`;
      runners.push(waitFor(runner.name, runner, async (signal) => (await fetch(healthz, { signal })).ok, 60_000));
    }
    // The first failure fails the start at once (the catch below stops every child, the runners still starting too).
    await Promise.all(runners);

    if (opts.cronEveryMs > 0) {
      // wrangler dev never fires Cron Triggers by itself; this stands in for Cloudflare's scheduler.
      cronTimer = setInterval(() => {
        fetch(`${edgeUrl}/__scheduled?cron=${encodeURIComponent("* * * * *")}`).catch(() => {});
      }, opts.cronEveryMs);
      cronTimer.unref();
    }
    return {
      edgeUrl,
      libsqlUrl,
      libsqlAuthToken: secrets.libsqlAuthToken,
      runnerToken: secrets.runnerToken,
      admin,
      pids: Object.assign(pids, Object.fromEntries(children.map((c) => [c.name, c.proc.pid!]))),
      stopDb,
      startDb,
      stop,
    };
  } catch (err) {
    // The start's own error is the one to tell; a failure to clean up after it is told beside it, not instead.
    const cleanup = await stop().then(
      () => "",
      (stopErr: unknown) => `; then ${stopErr instanceof Error ? stopErr.message : String(stopErr)}`,
    );
    if (!cleanup) throw err;
    throw new Error(`${err instanceof Error ? err.message : String(err)}${cleanup}`, { cause: err });
  }
}
