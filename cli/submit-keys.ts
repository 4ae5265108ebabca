import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { configDir, readJson, writePrivateJson, type Env } from "./config";

/** A submit's Idempotency-Key, kept until its job POST is answered. */
interface KeyEntry {
  key: string;
  /** The process that sends it: a key in use by a live process is not reused (see `keyFor`). */
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
 * process gets a key of its own: two such commands mean two jobs.
 */
export class SubmitKeys {
  private constructor(
    private readonly file: string,
    private readonly entries: Record<string, KeyEntry>,
  ) {}

  static async load(env: Env, now = Date.now()): Promise<SubmitKeys> {
    const file = join(configDir(env), "submits.json");
    const all = (await readJson<Record<string, KeyEntry>>(file)) ?? {};
    const fresh = Object.fromEntries(Object.entries(all).filter(([, e]) => now - e.createdAt < KEEP_MS));
    return new SubmitKeys(file, fresh);
  }

  /** The key for this request: the one an earlier, ended run left, else a new one recorded for this process. */
  keyFor(fingerprint: string, now = Date.now()): string {
    const earlier = this.entries[fingerprint];
    if (earlier && (earlier.pid === process.pid || !alive(earlier.pid))) {
      this.entries[fingerprint] = { ...earlier, pid: process.pid };
      return earlier.key;
    }
    if (earlier) return randomBytes(16).toString("hex");
    const key = randomBytes(16).toString("hex");
    this.entries[fingerprint] = { key, pid: process.pid, createdAt: now };
    return key;
  }

  /** The job POST was answered (a job, or a refusal no retry changes): the key is done. */
  done(fingerprint: string, key: string): void {
    if (this.entries[fingerprint]?.key === key) delete this.entries[fingerprint];
  }

  save(): Promise<void> {
    return writePrivateJson(this.file, this.entries);
  }
}

/** What a submit asks for, as a key of submits.json. */
export function submitFingerprint(
  url: string,
  files: readonly { path: string; size: number; mtimeMs: number }[],
  variations: number,
  effects: unknown,
): string {
  return JSON.stringify([url, variations, effects ?? null, files.map((f) => [f.path, f.size, f.mtimeMs])]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
