import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, startStack, type Stack } from "../../scripts/stack";
import { freePort, freePortRun } from "./ports";
import { testEdgeConfig } from "./wrangler";

const run = promisify(execFile);

export interface TestStackOptions {
  /** Prefix of the throwaway directory under the system temp dir (`vr-ui-`, `vr-fault-<label>-`). */
  prefix: string;
  runners: number;
  runnerEnv?: Record<string, string>;
  edgeVars?: Record<string, string>;
  cronEveryMs?: number;
  /** Build the web UI into this stack's own assets (UI tests). Without it the edge serves no client scripts. */
  ui?: boolean;
  /** Serve throwaway databases besides the main one (the bench's claim runs). */
  namedDatabases?: boolean;
  log(line: string): void;
  /** The last lines logged, for the error of a stack that did not start. */
  logTail(): string;
}

export interface TestStack {
  stack: Stack;
  dir: string;
  dataDir: string;
  /** Runner `i` serves its metrics on `metricsPort + i`. */
  metricsPort: number;
  /** Stops every child and removes the directory. */
  stop(): Promise<void>;
}

/**
 * The launcher of `npm start` (scripts/stack.ts) for a test: free ports (one metrics port per runner, reserved
 * together), a throwaway data dir, and an edge with assets of its own. wrangler dev reloads the Worker whenever its
 * assets directory changes, so an edge serving the checkout's edge/public was reloaded mid-request (a drill's upload
 * cut with EPIPE) whenever another stack's UI build rewrote it. Nothing in a test run writes edge/public now.
 */
export async function startTestStack(opts: TestStackOptions): Promise<TestStack> {
  const dir = await mkdtemp(join(tmpdir(), opts.prefix));
  const removeDir = () => rm(dir, { recursive: true, force: true });
  const setup = async () => {
    const wranglerConfig = await testEdgeConfig(dir);
    // The config's own [build] is a no-op: one tsc here instead of the two a wrangler dev start runs (30-40 s on
    // two cores), into this stack's copy of the assets.
    if (opts.ui) {
      await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.ui.json"), "--outDir", join(dir, "public/assets/js")], { cwd: ROOT }).catch(
        (err: { stdout?: string; message?: string }) => {
          // tsc prints its errors on stdout.
          throw new Error(`building the UI failed: ${err.message ?? String(err)}\n${err.stdout ?? ""}`);
        },
      );
    }
    return { wranglerConfig, metricsPort: await freePortRun(Math.max(1, opts.runners)), edgePort: await freePort(), libsqlPort: await freePort() };
  };
  const { wranglerConfig, metricsPort, edgePort, libsqlPort } = await setup().catch(async (err: unknown) => {
    await removeDir();
    throw err;
  });
  const dataDir = join(dir, "data");
  const stack = await startStack({
    host: "127.0.0.1",
    edgePort,
    libsqlPort,
    metricsPort,
    dataDir,
    adminEmail: "admin@example.com",
    runners: opts.runners,
    runnerEnv: opts.runnerEnv,
    cronEveryMs: opts.cronEveryMs ?? 0,
    edgeVars: opts.edgeVars,
    namedDatabases: opts.namedDatabases,
    wranglerConfig,
    log: opts.log,
  }).catch(async (err: unknown) => {
    const tail = opts.logTail();
    await removeDir();
    throw new Error(`stack did not start: ${err instanceof Error ? err.message : String(err)}\n${tail}`);
  });
  return {
    stack,
    dir,
    dataDir,
    metricsPort,
    async stop() {
      try {
        await stack.stop();
      } finally {
        await removeDir();
      }
    },
  };
}
