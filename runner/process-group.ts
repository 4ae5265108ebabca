import { delay } from "./delay";

/**
 * Process groups: FFmpeg, the launcher's children and test servers each run in a group of their own (spawned
 * detached), so one signal reaches a process and everything it started (wrangler's workerd, a shell's child).
 */

/** Signals the whole group led by `pid`; false when the group is already gone. */
export function signalGroup(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops a group with a grace period: SIGTERM → wait up to `graceMs` for `exited` → SIGKILL. Resolves once the
 * leader has exited. (FFmpeg's own staged sequence, with `q` first, is the ProcessRegistry's.)
 */
export async function stopProcessGroup(pid: number, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (!signalGroup(pid, "SIGTERM")) return;
  const abort = new AbortController();
  const inTime = await Promise.race([exited.then(() => true), delay(graceMs, abort.signal).then(() => false, () => true)]);
  abort.abort();
  if (!inTime) signalGroup(pid, "SIGKILL");
  await exited;
}
