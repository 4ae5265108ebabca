import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./ports";
import { stopProcessGroup } from "../../runner/process-group";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WRANGLER = join(ROOT, "node_modules/.bin/wrangler");
const QUIET_ENV = { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" };

export interface WranglerDev {
  url: string;
  port: number;
  persistTo: string;
  /** Everything wrangler printed so far (for failure messages). */
  output(): string;
  close(): Promise<void>;
}

/**
 * Puts files into the local R2 bucket under `persistTo` with the wrangler CLI (run it BEFORE startWranglerDev on
 * the same directory: two workerd processes should not share the store). ~2 s per object.
 */
export async function putLocalObjects(persistTo: string, objects: { key: string; file: string }[]): Promise<void> {
  for (const o of objects) {
    await runToEnd(
      WRANGLER,
      ["r2", "object", "put", `video-refresher/${o.key}`, "--file", o.file, "--local", "--persist-to", persistTo],
      `put ${o.key}`,
    );
  }
}

function runToEnd(bin: string, args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd: ROOT, env: { ...process.env, ...QUIET_ENV }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`wrangler ${what} failed (${code}):\n${out}`))));
  });
}

/**
 * wrangler.toml for a test's edge: the same Worker, bindings, queue and cron, with two changes: the static assets
 * come from a copy (below), and its `[build]` (the UI's tsc; a UI test builds into its copy once, see
 * test/helpers/test-stack.ts) becomes a no-op
 * watching an empty directory under `dir`. With the real
 * one, every `wrangler dev` start runs that tsc twice in a row (once for the entry, once more when its watcher of
 * edge/ui is ready), 30-40 s on a 2-core machine and past a 60-s health deadline when the cores are shared; and any
 * edit under edge/ui elsewhere in the checkout would rebuild and reload the Worker mid-test, dropping miniflare's
 * in-memory queue. The Worker itself is still bundled by wrangler from edge/index.ts at start.
 */
export async function testEdgeConfig(dir: string): Promise<string> {
  const quiet = join(dir, "no-ui-build");
  await mkdir(quiet, { recursive: true });
  // The static assets are served from a copy: wrangler reloads the Worker whenever its assets directory changes, and
  // `npm start` in this checkout rebuilds the UI into edge/public while this edge may be mid-test. The client scripts
  // `npm start` built there are left out: a UI test serves its own build, never a stale one.
  const assets = join(dir, "public");
  const built = join(ROOT, "edge/public/assets/js");
  await cp(join(ROOT, "edge/public"), assets, { recursive: true, filter: (src) => src !== built && !src.startsWith(`${built}/`) });
  const abs = (p: string) => JSON.stringify(join(ROOT, p));
  const toml = (await readFile(join(ROOT, "wrangler.toml"), "utf8"))
    .replace(/^main = "(.*)"$/m, (_, p: string) => `main = ${abs(p)}`)
    .replace(/^directory = "(.*)"$/m, () => `directory = ${JSON.stringify(assets)}`)
    .replace(/^command = .*$/m, `command = "true"`)
    // Relative to this config's directory: an absolute path is joined onto it by wrangler's watcher, which then
    // reports a change of a directory that does not exist and reloads the Worker right after its first start.
    .replace(/^watch_dir = .*$/m, `watch_dir = "no-ui-build"`);
  if (!toml.includes(`command = "true"`) || !toml.includes(`watch_dir = "no-ui-build"`)) throw new Error("wrangler.toml: no [build] to replace");
  const file = join(dir, "wrangler.toml");
  await writeFile(file, toml);
  return file;
}

/**
 * Starts `wrangler dev` (the real edge in workerd, local R2 persisted under `persistTo`) on a free port with the
 * given secrets as --var, and waits until it answers. `close()` stops wrangler and its workerd children (and
 * removes the persist directory if this function created it).
 */
export async function startWranglerDev(opts: {
  libsqlUrl: string;
  runnerToken: string;
  persistTo?: string;
  vars?: Record<string, string>;
  timeoutMs?: number;
  /** Listen on this port (a restart of an edge whose URL the test keeps); default a free one. */
  port?: number;
}): Promise<WranglerDev> {
  const port = opts.port ?? (await freePort());
  const ownDir = opts.persistTo === undefined;
  const persistTo = opts.persistTo ?? (await mkdtemp(join(tmpdir(), "vr-wrangler-")));
  const vars = { LIBSQL_URL: opts.libsqlUrl, RUNNER_TOKEN: opts.runnerToken, ...opts.vars };
  const args = [
    "dev",
    "--config", await testEdgeConfig(persistTo),
    "--ip", "127.0.0.1",
    "--port", String(port),
    // An OS-chosen inspector port: the default probes 9229 upwards, and two stacks starting at the same moment (vitest
    // workers, parallel runs) can both pick the same one; the loser exits with "Address already in use".
    "--inspector-port", "0",
    "--persist-to", persistTo,
    "--test-scheduled",
    "--show-interactive-dev-session=false",
    "--log-level", "warn",
    ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
  // Own process group: wrangler starts workerd children, and close() must take them all down.
  const child: ChildProcess = spawn(WRANGLER, args, {
    cwd: ROOT,
    env: { ...process.env, ...QUIET_ENV },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout?.on("data", (d) => (output = (output + d).slice(-20_000)));
  child.stderr?.on("data", (d) => (output = (output + d).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const url = `http://127.0.0.1:${port}`;
  const removeOwnDir = async () => {
    if (ownDir) await rm(persistTo, { recursive: true, force: true }).catch(() => {});
  };
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return removeOwnDir();
    await stopProcessGroup(child.pid!, exited, 5000);
    await removeOwnDir();
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early (${child.exitCode}):\n${output}`);
    try {
      const res = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`wrangler dev did not become healthy in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, port, persistTo, output: () => output, close };
}
