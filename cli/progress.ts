import { printable } from "./printable";
import cliProgress from "cli-progress";

export interface Bar {
  /** Sets the value (same unit as `total`) and an optional status text. */
  update(value: number, info?: string): void;
  increment(delta: number, info?: string): void;
  setTotal(total: number): void;
}

/** Progress goes to stderr only: bars on a terminal, plain lines otherwise (logs, CI, pipes). */
export interface Progress {
  bar(name: string, total: number, format?: "bytes" | "percent"): Bar;
  log(line: string): void;
  stop(): void;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function createProgress(stderr: NodeJS.WritableStream & { isTTY?: boolean }): Progress {
  const inner = stderr.isTTY ? terminalProgress(stderr) : lineProgress(stderr);
  // Bar names (file names) and log lines carry what the server sent: see printable.
  return {
    bar(name, total, format) {
      const b = inner.bar(printable(name), total, format);
      const info = (i: string | undefined) => (i === undefined ? undefined : printable(i));
      return { update: (v, i) => b.update(v, info(i)), increment: (d, i) => b.increment(d, info(i)), setTotal: (t) => b.setTotal(t) };
    },
    log: (line) => inner.log(printable(line)),
    stop: () => inner.stop(),
  };
}

function terminalProgress(stream: NodeJS.WritableStream): Progress {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: "{name} |{bar}| {percentage}% {amount} {info}",
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      barsize: 30,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let stopped = false;
  return {
    bar(name, total, format = "bytes") {
      started = true;
      let value = 0;
      let max = total;
      const amount = () => (format === "bytes" ? `${formatBytes(value)}/${formatBytes(max)}` : "");
      const b = multi.create(total, 0, { name, amount: amount(), info: "" });
      return {
        update(v, info) {
          value = v;
          b.update(v, { amount: amount(), ...(info !== undefined ? { info } : {}) });
        },
        increment(d, info) {
          value += d;
          b.update(value, { amount: amount(), ...(info !== undefined ? { info } : {}) });
        },
        setTotal(t) {
          max = t;
          b.setTotal(t);
        },
      };
    },
    // MultiBar.log prints on its next redraw, which only happens while bars are shown.
    log: (line) => (started && !stopped ? multi.log(`${line}\n`) : stream.write(`${line}\n`)),
    stop() {
      // Once, and only if a bar was drawn (stopping re-renders every bar and ends with a newline).
      if (started && !stopped) multi.stop();
      stopped = true;
    },
  };
}

/** One line per 10 % step or status change, so logs stay readable. */
function lineProgress(stream: NodeJS.WritableStream): Progress {
  const write = (line: string) => stream.write(`${line}\n`);
  return {
    bar(name, total, format = "bytes") {
      let value = 0;
      let max = total;
      let lastStep = -1;
      let lastInfo: string | undefined;
      const report = (info?: string) => {
        const pct = max > 0 ? Math.min(100, Math.floor((value / max) * 100)) : 100;
        const step = Math.floor(pct / 10);
        if (step === lastStep && (info === undefined || info === lastInfo)) return;
        lastStep = step;
        if (info !== undefined) lastInfo = info;
        const amount = format === "bytes" ? ` (${formatBytes(value)}/${formatBytes(max)})` : "";
        write(`${name}: ${pct}%${amount}${lastInfo ? ` ${lastInfo}` : ""}`);
      };
      return {
        update(v, info) {
          value = v;
          report(info);
        },
        increment(d, info) {
          value += d;
          report(info);
        },
        setTotal(t) {
          max = t;
        },
      };
    },
    log: write,
    stop() {},
  };
}
