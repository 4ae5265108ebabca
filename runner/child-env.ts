import { execFile } from "node:child_process";

/**
 * How the runner starts FFmpeg and ffprobe. They parse untrusted uploads with a large decoder surface; the runner's
 * own environment holds the database credential (LIBSQL_AUTH_TOKEN) and RUNNER_TOKEN, which reach every user's data.
 *
 * - A child gets only what locating binaries and libraries, temporary files and locale need, so a decoder bug that
 *   reads its environment finds no secret there.
 * - Through util-linux `setpriv` (when present) it dies with the runner (`--pdeathsig`): a SIGKILLed runner's
 *   FFmpeg would otherwise encode on to the end.
 * - With FFMPEG_USER it runs as that unprivileged user, with no supplementary groups, no capabilities and no way to
 *   gain any. Stripping the environment alone is not enough: a process of the runner's own uid can read the
 *   runner's initial environment in /proc/<pid>/environ, and the secrets are there for the runner's whole life.
 */
const PASSED = ["PATH", "LD_LIBRARY_PATH", "TMPDIR", "LANG", "LC_ALL", "TZ"] as const;

export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const name of PASSED) if (env[name] !== undefined) out[name] = env[name];
  return out;
}

export interface ChildUser {
  uid: number;
  gid: number;
}

export interface ChildLaunch {
  /** Absolute path of `setpriv`, or null (then children neither die with the runner nor change user). */
  setpriv: string | null;
  /** The user FFmpeg runs as (needs `setpriv` and a runner started as root), or null for the runner's own. */
  user: ChildUser | null;
}

// Set once when a runner starts (from its validated config), like the process-wide environment it replaces: every
// FFmpeg/ffprobe of the process is started the same way, wherever in the runner it is spawned.
let launch: ChildLaunch = { setpriv: null, user: null };

export function configureChildren(next: ChildLaunch): void {
  if (next.user && !next.setpriv) throw new Error("running FFmpeg as another user needs setpriv");
  launch = next;
}

export function childLaunch(): ChildLaunch {
  return launch;
}

/** The command line and environment that start `bin args` as configured. `setpriv` execs in place: same pid. */
export function childCommand(bin: string, args: string[]): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const { setpriv, user } = launch;
  if (!setpriv) return { file: bin, args, env: childEnv() };
  // setpriv sets the parent-death signal after it changes the credentials (a change clears it in the kernel).
  const drop = user
    ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--inh-caps=-all", "--no-new-privs"]
    : [];
  return { file: setpriv, args: [...drop, "--pdeathsig", "SIGKILL", "--", bin, ...args], env: childEnv() };
}

/** Runs `bin args` as a media child (as configured) and waits for it; its exit status is the answer. */
export function runChild(bin: string, args: string[], timeoutMs: number): Promise<{ code: number; stderr: string }> {
  const cmd = childCommand(bin, args);
  return new Promise((resolve) => {
    execFile(cmd.file, cmd.args, { timeout: timeoutMs, killSignal: "SIGKILL", env: cmd.env }, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stderr: String(stderr) || (err ? err.message : "") });
    });
  });
}
