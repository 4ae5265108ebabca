import { readFileSync } from "node:fs";
import { createDb } from "../db/client";
import { BlobClient } from "./blobs";
import { ConfigError, loadRunnerConfig } from "./config";
import { withLocalStack } from "./local-stack";
import { createLogger, errorMessage } from "./log";
import { Runner } from "./loop";
import { RunnerMetrics, startMetricsServer, type MetricsServer } from "./metrics";
import { installSignalHandlers } from "./shutdown";
import { DuplicateRunnerError, FfmpegUserError, WorkDirError } from "./workdir";
import { delay } from "./delay";

/** Start-up failures a retry cannot mend: the configuration or the machine must change. */
const fatalAtStart = (err: unknown) => err instanceof DuplicateRunnerError || err instanceof FfmpegUserError || err instanceof WorkDirError;

const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

async function main(): Promise<void> {
  let config;
  const { env, source } = await withLocalStack(process.env);
  try {
    config = loadRunnerConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger({ prefix: config.RUNNER_ID, level: config.LOG_LEVEL });
  if (source) log.info("settings from the local stack (npm start)", { file: source, edge: config.EDGE_URL });
  const metrics = new RunnerMetrics();
  const db = createDb(config.LIBSQL_URL, {
    authToken: config.LIBSQL_AUTH_TOKEN,
    timeoutMs: Math.max(5000, Math.min(config.LEASE_MS / 2, 15_000)),
    onRoundTrip: () => metrics.dbRoundTrips.inc(),
  });
  const blobs = new BlobClient({ edgeUrl: config.EDGE_URL, token: config.RUNNER_TOKEN });
  const runner = new Runner({ config, db, blobs, metrics, log, version });

  let server: MetricsServer | null = null;
  installSignalHandlers({
    log,
    shutdown: async () => {
      await runner.shutdown();
      await server?.close();
    },
    killNow: () => runner.killNow(),
  });

  if (config.METRICS_PORT !== undefined) {
    server = await startMetricsServer({ port: config.METRICS_PORT, metrics, health: () => runner.health() });
    log.info("metrics listening", { port: server.port, paths: "/healthz,/metrics" });
  }
  // The database may still be starting (compose, launcher): retry the first contact instead of dying.
  for (let attempt = 1; ; attempt++) {
    try {
      await runner.start();
      break;
    } catch (err) {
      if (source && attempt >= 3 && !fatalAtStart(err)) {
        // The settings are those a local stack left behind; it is most likely not running any more.
        process.stderr.write(`runner: the local stack's database (${config.LIBSQL_URL}, from ${source}) does not answer — is \`npm start\` running?\n`);
        process.exit(1);
      }
      if (attempt >= 30 || fatalAtStart(err)) throw err;
      log.warn("cannot reach the database yet; retrying", { attempt, error: errorMessage(err) });
      await delay(1000, undefined, { keepAlive: true });
    }
  }
}

main().catch((err) => {
  // A start-up refusal is the operator's to mend from its message; the runner's own stack would only bury it.
  const told = fatalAtStart(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`runner: fatal: ${told}\n`);
  process.exit(1);
});
