export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function format(fields: LogFields | undefined): string {
  if (!fields) return "";
  let out = "";
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    out += ` ${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
  }
  return out;
}

/** One line per event: `<iso time> <level> <message> key=value…` on stdout (errors on stderr). */
export function createLogger(opts: { level?: LogLevel; prefix?: string; sink?: (line: string, level: LogLevel) => void } = {}): Logger {
  const min = ORDER[opts.level ?? "info"];
  const sink =
    opts.sink ??
    ((line: string, level: LogLevel) => (level === "error" || level === "warn" ? process.stderr : process.stdout).write(line + "\n"));
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (ORDER[level] < min) return;
    sink(`${new Date().toISOString()} ${level.padEnd(5)} ${opts.prefix ? `[${opts.prefix}] ` : ""}${msg}${format(fields)}`, level);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
