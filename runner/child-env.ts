/**
 * The environment FFmpeg and ffprobe run with. They parse untrusted uploads with a large decoder surface; the runner's
 * own environment holds the database credential (LIBSQL_AUTH_TOKEN) and RUNNER_TOKEN, which reach every user's data.
 * A child gets only what locating binaries and libraries, temporary files and locale need, so a decoder bug that
 * reads its environment finds no secret there.
 */
const PASSED = ["PATH", "LD_LIBRARY_PATH", "TMPDIR", "LANG", "LC_ALL", "TZ"] as const;

export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const name of PASSED) if (env[name] !== undefined) out[name] = env[name];
  return out;
}
