import type { Env } from "./config";
import type { Progress } from "./progress";

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  env: Env;
}

/** What every command gets: its streams, the environment, progress (stderr) and the one output document. */
export interface Ctx extends Io {
  json: boolean;
  progress: Progress;
  /** The command's result: JSON on stdout with --json, else the text. */
  result(value: unknown, text: string): void;
  /** A note for people (stderr; never part of --json output). */
  note(line: string): void;
}
