import { PassThrough } from "node:stream";
import type { Handlers } from "../../cli/commands";
import { runCli } from "../../cli/main";

/** Runs the CLI in this process (no stdin), capturing what it prints: the real handlers unless others are given. */
export async function runCapturedCli(argv: string[], env: Record<string, string | undefined>, handlers?: Handlers) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (d) => (out += d));
  stderr.on("data", (d) => (err += d));
  const code = await runCli(argv, { stdout, stderr, stdin: new PassThrough(), env }, handlers);
  return { code, out, err };
}
