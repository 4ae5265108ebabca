import { join } from "node:path";
import { configDir, readJson, updatePrivateJson } from "./config";
import type { ConfigPlace } from "./env";

/** Accounts remembered per config dir; the oldest go first past it. */
const MAX_DEVICES = 50;

interface DeviceEntry {
  /** The `vr_device` cookie as a request sends it (`name=value`). */
  cookie: string;
  savedAt: number;
}

const keyOf = (url: string, email: string) => `${url} ${email.trim().toLowerCase()}`;
const fileOf = (env: ConfigPlace) => join(configDir(env), "devices.json");

/**
 * `devices.json` (0600) in the config dir: the server's "this device signed in to this account before" cookie per
 * server and account, as a browser keeps it. With it, `login` is throttled on this device's own counter instead of
 * the account's, so someone guessing at the account from elsewhere cannot lock its owner's CLI out (the edge's device
 * cookie defence). Kept across logout, as a browser keeps the cookie; it is no credential by itself (the password
 * is still asked).
 */
export async function deviceCookie(env: ConfigPlace, url: string, email: string): Promise<string | null> {
  const all = (await readJson<Record<string, DeviceEntry>>(fileOf(env)).catch(() => undefined)) ?? {};
  return all[keyOf(url, email)]?.cookie ?? null;
}

export async function saveDeviceCookie(env: ConfigPlace, url: string, email: string, cookie: string, now = Date.now()): Promise<void> {
  // Under the state files' lock: two logins at once (to two accounts) would otherwise each write back a copy without
  // the other's cookie, and the lost one's account is throttled on its shared counter again. A file that cannot be
  // read is started over: it holds nothing but these cookies.
  const startOver = { startOverIfUnreadable: true };
  await updatePrivateJson<Record<string, DeviceEntry>>(fileOf(env), (all = {}) => {
    all[keyOf(url, email)] = { cookie, savedAt: now };
    const kept = Object.entries(all)
      .sort(([, a], [, b]) => b.savedAt - a.savedAt)
      .slice(0, MAX_DEVICES);
    return Object.fromEntries(kept);
  }, startOver);
}

/** The device cookie a login answer set (`vr_device`, or `__Host-vr_device` on https and loopback: the first one), as `name=value`; else null. */
export function deviceCookieOf(setCookies: readonly string[]): string | null {
  for (const c of setCookies) {
    const pair = c.split(";")[0]!.trim();
    const name = pair.slice(0, pair.indexOf("="));
    if ((name === "vr_device" || name === "__Host-vr_device") && !pair.endsWith("=")) return pair;
  }
  return null;
}
