import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { configDir, processAlive, updatePrivateJson } from "./config";
import type { ConfigPlace } from "./env";

/** A submit's Idempotency-Key, kept until its job POST is answered. */
interface KeyEntry {
  key: string;
  /** The process that sends it: a key in use by a live process is not reused (see `claim`). */
  pid: number;
  createdAt: number;
}

/**
 * An unanswered submit's key is reused this long. The server keeps a key as long as its job, but the same command
 * run days later is most likely a new request, not a retry: a day matches JOB_TTL_HOURS (24 h), after which the
 * uploads an interrupted run left are gone too. A replay within it is said on stderr (cli/upload.ts).
 */
const KEEP_MS = 24 * 3600_000;

/**
 * `submits.json` in the config dir: the Idempotency-Key of each submit whose job POST has not been answered yet, by
 * what it asks for (server, files, variations, effects). A re-run of the same command after an interrupted one —
 * Ctrl-C, a crash, a lost answer after the server made the job — sends the same key, and the server answers with the
 * job the first run made instead of making a second. A submit of the same files running at the same time in another
 * process gets a key of its own: two such commands mean two jobs. Every change re-reads the file under its lock
 * (config.ts updatePrivateJson), so parallel submits keep each other's keys.
 */
export const SubmitKeys = {
  /**
   * The key for this request: the one an earlier, ended run left (`reused`), else a new one recorded for this
   * process.
   */
  async claim(env: ConfigPlace, fingerprint: string, now = Date.now()): Promise<{ key: string; reused: boolean }> {
    let key = "";
    let reused = false;
    await updatePrivateJson<Record<string, KeyEntry>>(fileOf(env), (all = {}) => {
      const fresh = Object.fromEntries(Object.entries(all).filter(([, e]) => now - e.createdAt < KEEP_MS));
      const earlier = fresh[fingerprint];
      if (earlier && (earlier.pid === process.pid || !processAlive(earlier.pid))) {
        fresh[fingerprint] = { ...earlier, pid: process.pid };
        key = earlier.key;
        reused = true;
      } else {
        key = randomBytes(16).toString("hex");
        // A live process's key stays its own; this run's is not recorded then.
        if (!earlier) fresh[fingerprint] = { key, pid: process.pid, createdAt: now };
      }
      return fresh;
    });
    return { key, reused };
  },

  /** The job POST was answered (a job, or a refusal no retry changes): the key is done. */
  async done(env: ConfigPlace, fingerprint: string, key: string): Promise<void> {
    await updatePrivateJson<Record<string, KeyEntry>>(fileOf(env), (all = {}) => {
      if (all[fingerprint]?.key === key) delete all[fingerprint];
      return all;
    });
  },
};

const fileOf = (env: ConfigPlace) => join(configDir(env), "submits.json");

/** What a submit asks for, as a key of submits.json. */
export function submitFingerprint(
  url: string,
  files: readonly { path: string; size: number; mtimeMs: number }[],
  variations: number,
  effects: unknown,
): string {
  return JSON.stringify([url, variations, effects ?? null, files.map((f) => [f.path, f.size, f.mtimeMs])]);
}
