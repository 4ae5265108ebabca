import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { CliError, EXIT } from "./errors";

export type Env = Record<string, string | undefined>;

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
export function configDir(env: Env): string {
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith("/") ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), ".config");
  return join(base, "video-refresher");
}

export const configFile = (env: Env) => join(configDir(env), "config.json");

/** Writes a private file atomically (temporary name, then rename), 0600 in a 0700 directory. */
export async function writePrivateJson(file: string, value: unknown): Promise<void> {
  const dir = file.slice(0, file.lastIndexOf("/"));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
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

export const readConfig = (env: Env) => readJson<StoredConfig>(configFile(env));
export const writeConfig = (env: Env, config: StoredConfig) => writePrivateJson(configFile(env), config);
export const deleteConfig = (env: Env) => rm(configFile(env), { force: true });

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
export function requireSafeTransport(url: string, env: Env): void {
  const { protocol, hostname } = new URL(url);
  if (protocol === "https:" || isLoopback(hostname) || env.VIDEO_REFRESHER_ALLOW_HTTP === "1") return;
  throw new CliError(
    `refusing to send credentials over plain http to ${hostname}: use https:// (or set VIDEO_REFRESHER_ALLOW_HTTP=1 on a network you trust)`,
    EXIT.usage,
    "insecure_url",
  );
}

/** VIDEO_REFRESHER_URL / VIDEO_REFRESHER_TOKEN override what `login` stored. */
export async function resolveAuth(env: Env): Promise<Auth> {
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
export async function storedTokenFor(env: Env, url: string, was: StoredConfig | undefined): Promise<string | null> {
  const stored = await readConfig(env);
  if (!stored || !was?.email || stored.email !== was.email) return null;
  try {
    return normaliseUrl(stored.url) === url ? stored.token : null;
  } catch {
    return null;
  }
}
