import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir, hostname } from "node:os";
import { dirname, join } from "node:path";
import { realSleep } from "./client";
import type { CliEnv, ConfigPlace } from "./env";
import { CliError, EXIT } from "./errors";

/** What `login` stores (0600): the server and an API token; `tokenId` when the CLI created the token itself. */
export interface StoredConfig {
  url: string;
  token: string;
  tokenId?: string;
  email?: string;
}

export interface Auth {
  url: string;
  token: string;
}

/** `$XDG_CONFIG_HOME/video-refresher`, else `~/.config/video-refresher`. */
export function configDir(env: ConfigPlace): string {
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith("/") ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), ".config");
  return join(base, "video-refresher");
}

export const configFile = (env: ConfigPlace) => join(configDir(env), "config.json");

/** Writes a private file atomically (temporary name, then rename), 0600 in a 0700 directory. */
export async function writePrivateJson(file: string, value: unknown): Promise<void> {
  const dir = file.slice(0, file.lastIndexOf("/"));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Unique per write: two writers in one process must not share (and rename away) each other's temporary file.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * A lock is held for one read and one write of a small file; one this old was left by a process that stopped
 * holding it (killed, machine asleep, another host sharing the directory), not one still working.
 */
const LOCK_STALE_MS = 10_000;

/**
 * Re-reads `file`, lets `change` edit what it holds now and writes it back (atomically), under `<file>.lock`
 * (created with O_EXCL): several CLI processes sharing a config dir (parallel `submit`s) each change their own
 * entries, and none writes back a stale copy over another's. A lock whose process is gone (same host) or that is
 * older than LOCK_STALE_MS is broken. With `startOverIfUnreadable`, a file that cannot be parsed (cut off, edited by
 * hand) counts as absent — decided under the lock, so a process that judged it so cannot remove another's good copy.
 */
export async function updatePrivateJson<T>(
  file: string,
  change: (current: T | undefined) => T,
  opts: { startOverIfUnreadable?: boolean } = {},
): Promise<T> {
  const lock = `${file}.lock`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), nonce: randomBytes(8).toString("hex") });
  const stillMine = async () => (await readFile(lock, "utf8").catch(() => null)) === mine;
  for (;;) {
    await takeLock(lock, mine);
    try {
      const read = readJson<T>(file);
      const value = change(await (opts.startOverIfUnreadable ? read.catch(() => undefined) : read));
      // A holder stopped past LOCK_STALE_MS (Ctrl-Z, a sleeping laptop) may have lost the lock meanwhile: its copy
      // is stale then, and written back it would undo the new holder's change. Read and change again instead.
      if (await stillMine()) {
        await writePrivateJson(file, value);
        return value;
      }
    } finally {
      if (await stillMine()) await rm(lock, { force: true });
    }
  }
}

async function takeLock(lock: string, mine: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(lock, "wx", 0o600);
      try {
        await fh.writeFile(mine);
      } finally {
        await fh.close();
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const held = await readFile(lock, "utf8").catch(() => null);
    if (held !== null && (await lockAbandoned(lock, held))) {
      // Broken by a rename, which one process wins: two that both judged it abandoned must not both remove it (the
      // second would remove the lock the first then took). What the rename took is checked: a live lock taken by
      // mistake goes back (link: only if nobody took the name meanwhile).
      const taken = `${lock}.${randomBytes(6).toString("hex")}.broken`;
      if (await rename(lock, taken).then(() => true, () => false)) {
        if ((await readFile(taken, "utf8").catch(() => null)) !== held) await link(taken, lock).catch(() => {});
        await rm(taken, { force: true });
      }
      continue;
    }
    await realSleep(Math.min(50, 2 + attempt) * (1 + Math.random()));
  }
}

async function lockAbandoned(lock: string, held: string): Promise<boolean> {
  const since = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
  if (since > LOCK_STALE_MS) return true;
  try {
    const { pid, host } = JSON.parse(held) as { pid?: unknown; host?: unknown };
    return host === hostname() && typeof pid === "number" && !processAlive(pid);
  } catch {
    // Created but not written yet (its process is between the two steps), or cut short: only age tells.
    return false;
  }
}

/** Whether a process of this machine still runs (EPERM: it does, under another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export const readConfig = (env: ConfigPlace) => readJson<StoredConfig>(configFile(env));
export const writeConfig = (env: ConfigPlace, config: StoredConfig) => writePrivateJson(configFile(env), config);
export const deleteConfig = (env: ConfigPlace) => rm(configFile(env), { force: true });

/** Normalises a server URL: http(s) only, no trailing slash. */
export function normaliseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`not a URL: ${raw}`, EXIT.usage, "usage");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new CliError(`not an http(s) URL: ${raw}`, EXIT.usage, "usage");
  return url.href.replace(/\/+$/, "");
}

/** A host whose traffic never leaves this machine: plain http to it exposes no password or token. */
function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || h === "[::1]" || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * A password or token sent over plain http to another machine can be read by anyone on the path, so the CLI speaks
 * http only to this machine unless VIDEO_REFRESHER_ALLOW_HTTP=1 says the network is trusted (a private lab).
 */
export function requireSafeTransport(url: string, env: Pick<CliEnv, "VIDEO_REFRESHER_ALLOW_HTTP">): void {
  const { protocol, hostname } = new URL(url);
  if (protocol === "https:" || isLoopback(hostname) || env.VIDEO_REFRESHER_ALLOW_HTTP) return;
  throw new CliError(
    `refusing to send credentials over plain http to ${hostname}: use https:// (or set VIDEO_REFRESHER_ALLOW_HTTP=1 on a network you trust)`,
    EXIT.usage,
    "insecure_url",
  );
}

/** VIDEO_REFRESHER_URL / VIDEO_REFRESHER_TOKEN override what `login` stored. */
export async function resolveAuth(
  env: ConfigPlace & Pick<CliEnv, "VIDEO_REFRESHER_URL" | "VIDEO_REFRESHER_TOKEN" | "VIDEO_REFRESHER_ALLOW_HTTP">,
): Promise<Auth> {
  const stored = await readConfig(env);
  const url = env.VIDEO_REFRESHER_URL || stored?.url;
  const token = env.VIDEO_REFRESHER_TOKEN || stored?.token;
  if (!url || !token) {
    throw new CliError(
      "not logged in: run `video-refresher login --url URL` (or set VIDEO_REFRESHER_URL and VIDEO_REFRESHER_TOKEN)",
      EXIT.auth,
      "not_logged_in",
    );
  }
  const safe = normaliseUrl(url);
  requireSafeTransport(safe, env);
  return { url: safe, token };
}

/**
 * The token the config holds now for the same server and account as `was` (another process may have logged in
 * since this one read it), or null. Never another account's: a command following it would act in that account.
 */
export async function storedTokenFor(env: ConfigPlace, url: string, was: StoredConfig | undefined): Promise<string | null> {
  const stored = await readConfig(env);
  if (!stored || !was?.email || stored.email !== was.email) return null;
  try {
    return normaliseUrl(stored.url) === url ? stored.token : null;
  } catch {
    return null;
  }
}
