import type { CliEnv, RawEnv } from "./env";
import type { Progress } from "./progress";

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  /** The raw environment; runCli parses it once (cli/env.ts) into Ctx.env. */
  env: RawEnv;
}

/** What every command gets: its streams, the parsed environment, progress (stderr) and the one output document. */
export interface Ctx extends Omit<Io, "env"> {
  /** The environment as parsed once when the command started (cli/env.ts): never process.env. */
  env: CliEnv;
  json: boolean;
  progress: Progress;
  /** The command's result: JSON on stdout with --json, else the text. */
  result(value: unknown, text: string): void;
  /** A note for people (stderr; never part of --json output). */
  note(line: string): void;
}
