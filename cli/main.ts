import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import type { Schemas } from "./client";
import { handlers as realHandlers, type Handlers, type JobStatus } from "./commands";
import type { Ctx, Io } from "./context";
import { parseCliEnv } from "./env";
import { EXIT, toCliError, type ExitCode } from "./errors";
import { printable, printableLines } from "./printable";
import { createProgress, type Progress } from "./progress";

type EffectsRequest = Schemas["EffectsRequest"];
type EffectFamily = EffectsRequest["families"][number];

const JOB_STATUSES = ["queued", "processing", "paused", "cancelling", "completed", "failed", "cancelled"] as const satisfies readonly JobStatus[];
// Every status in the API's document is offered to `ls --status`: a new one in cli/api.d.ts fails the type-check here.
const everyStatusListed: Exclude<JobStatus, (typeof JOB_STATUSES)[number]> extends never ? true : never = true;
void everyStatusListed;

const EFFECT_FAMILIES = ["color", "zoom", "rotate", "mirror", "speed", "noise", "audio"] as const satisfies readonly EffectFamily[];
const EFFECT_INTENSITIES = ["subtle", "medium", "strong"] as const satisfies readonly EffectsRequest["intensity"][];
// As for statuses: a family or intensity the API adds fails the type-check here until the CLI offers it.
const everyFamilyListed: Exclude<EffectFamily, (typeof EFFECT_FAMILIES)[number]> extends never ? true : never = true;
const everyIntensityListed: Exclude<EffectsRequest["intensity"], (typeof EFFECT_INTENSITIES)[number]> extends never ? true : never = true;
void everyFamilyListed;
void everyIntensityListed;

/** `--effects color,zoom,mirror` (families, comma-separated) or the API's JSON (`{"intensity":…,"families":[…]}`). */
export function parseEffects(raw: string | undefined, intensity: string | undefined): EffectsRequest | undefined {
  if (raw === undefined && intensity === undefined) return undefined;
  let families: string[] = ["color", "zoom"];
  let level = intensity;
  if (raw !== undefined && raw.trim().startsWith("{")) {
    let parsed: { intensity?: unknown; families?: unknown };
    try {
      parsed = JSON.parse(raw) as typeof parsed;
    } catch {
      throw new InvalidArgumentError("--effects: not valid JSON.");
    }
    if (!Array.isArray(parsed.families) || parsed.families.some((f) => typeof f !== "string")) {
      throw new InvalidArgumentError('--effects: JSON needs "families": a list of family names.');
    }
    families = parsed.families as string[];
    if (parsed.intensity !== undefined) {
      if (intensity !== undefined) throw new InvalidArgumentError("give the intensity in --effects JSON or with --intensity, not both.");
      level = String(parsed.intensity);
    }
  } else if (raw !== undefined) {
    families = raw.split(",").map((f) => f.trim()).filter(Boolean);
  }
  const unknown = families.filter((f) => !(EFFECT_FAMILIES as readonly string[]).includes(f));
  if (unknown.length) throw new InvalidArgumentError(`--effects: unknown famil${unknown.length > 1 ? "ies" : "y"} ${unknown.join(", ")}; use ${EFFECT_FAMILIES.join(", ")}.`);
  if (!families.length) throw new InvalidArgumentError("--effects: choose at least one family.");
  if (level !== undefined && !(EFFECT_INTENSITIES as readonly string[]).includes(level)) {
    throw new InvalidArgumentError(`--intensity must be one of ${EFFECT_INTENSITIES.join(", ")}.`);
  }
  return { intensity: (level ?? "subtle") as EffectsRequest["intensity"], families: families as EffectFamily[] };
}

function intIn(min: number, max: number, what: string) {
  return (raw: string) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${what} must be a whole number from ${min} to ${max}.`);
    }
    return n;
  };
}

function makeCtx(io: Io, json: boolean): Ctx {
  return {
    ...io,
    // Once, before the command does anything: a bad value is a usage error (exit 2), not a default or a NaN later.
    env: parseCliEnv(io.env),
    json,
    progress: createProgress(io.stderr),
    result(value, text) {
      io.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${printableLines(text)}\n`);
    },
    note: (line) => io.stderr.write(`${printable(line)}\n`),
  };
}

/**
 * The argument parser. Each action hands the parsed arguments to `handlers` and stores the exit code in
 * `state.code`; `state.json` says whether errors should also be reported as JSON on stdout.
 */
export interface RunState {
  code: ExitCode;
  json: boolean;
  progress?: Progress;
}

export function buildProgram(io: Io, handlers: Handlers, state: RunState): Command {
  const program = new Command("video-refresher")
    .description("Submit videos to Video Refresher, follow their jobs, download the variations.")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError("(add --help for usage)")
    .showSuggestionAfterError(true)
    .helpCommand(false);

  const run = (json: boolean | undefined, fn: (ctx: Ctx) => Promise<ExitCode>) => {
    state.json = Boolean(json);
    const ctx = makeCtx(io, state.json);
    state.progress = ctx.progress;
    return fn(ctx).then((code) => {
      state.code = code;
    });
  };
  const interval = () =>
    new Option("--interval <ms>", "how often to poll the job while waiting").argParser(intIn(200, 600_000, "--interval")).default(1000).hideHelp();

  program
    .command("login")
    .description("Sign in and store the server URL and an API token (email/password create a token through the API)")
    .requiredOption("--url <url>", "server, e.g. https://video-refresher.example.com")
    .option("--token <token>", "use an existing API token instead of email/password; `-` reads it from stdin (keeps it out of ps and shell history)")
    .option("--email <email>", "account email (asked for when missing)")
    .option("--json", "print one JSON document on stdout")
    .action((opts) => run(opts.json, (ctx) => handlers.login(ctx, { url: opts.url, token: opts.token, email: opts.email })));

  program
    .command("logout")
    .description("Revoke the stored API token (when the CLI created it) and delete the stored credentials")
    .option("--forget", "delete the stored credentials even when the server cannot revoke the token")
    .option("--json", "print one JSON document on stdout")
    .action((opts) => run(opts.json, (ctx) => handlers.logout(ctx, { forget: opts.forget })));

  program
    .command("submit")
    .description("Upload videos as one job (over 64 MiB in total: through the resumable upload API)")
    .argument("<files...>", "video files (1–10)")
    .requiredOption("-n, --variations <n>", "variations per video (1–20)", intIn(1, 20, "--variations"))
    .option("--effects <families>", `effect families, comma-separated (${EFFECT_FAMILIES.join(", ")}; default color,zoom), or the API's JSON`)
    .addOption(new Option("--intensity <level>", "how strong the effects are (default subtle)").choices([...EFFECT_INTENSITIES]))
    .option("--wait", "follow the job until it finishes or is paused; exit 1 unless it completed")
    .option("--json", "print one JSON document on stdout")
    .addOption(interval())
    .action((files: string[], opts) => {
      if (files.length > 10) throw new InvalidArgumentError("at most 10 files per job.");
      const effects = parseEffects(opts.effects, opts.intensity);
      return run(opts.json, (ctx) =>
        handlers.submit(ctx, files, { variations: opts.variations, wait: Boolean(opts.wait), intervalMs: opts.interval, effects }),
      );
    });

  program
    .command("ls")
    .description("List your jobs, newest first")
    .addOption(new Option("--status <status>", "only jobs in this status").choices([...JOB_STATUSES]))
    .option("--limit <n>", "how many (1–100)", intIn(1, 100, "--limit"), 20)
    .option("--json", "print one JSON document on stdout")
    .action((opts) => run(opts.json, (ctx) => handlers.ls(ctx, { status: opts.status, limit: opts.limit })));

  program
    .command("status")
    .description("Show a job; --watch follows it live until it finishes")
    .argument("<id>", "job id")
    .option("--watch", "follow until the job is terminal or paused; exit 1 unless it completed")
    .option("--json", "print one JSON document on stdout")
    .addOption(interval())
    .action((id: string, opts) => run(opts.json, (ctx) => handlers.status(ctx, id, { watch: Boolean(opts.watch), intervalMs: opts.interval })));

  program
    .command("cancel")
    .description("Cancel jobs (finished variations stay downloadable)")
    .argument("[ids...]", "job ids")
    .option("--reason <reason>", "recorded with the cancel (≤ 500 characters)")
    .option("--all-queued", "cancel the queued jobs you can see, up to 200 at a time: yours, or every user's when you are an admin")
    .option("--json", "print one JSON document on stdout")
    .action((ids: string[], opts) => {
      if (opts.allQueued && ids.length) throw new InvalidArgumentError("give job ids or --all-queued, not both.");
      if (!opts.allQueued && !ids.length) throw new InvalidArgumentError("give at least one job id, or --all-queued.");
      return run(opts.json, (ctx) => handlers.cancel(ctx, ids, { reason: opts.reason, allQueued: Boolean(opts.allQueued) }));
    });

  const controls = [
    ["pause", "Pause a queued or processing job: its running encodes stop and go back to the queue (finished ones stay)", false],
    ["resume", "Resume a paused job, or continue a cancelled one (its unfinished variations are queued again)", true],
    ["retry", "Queue the failed variations of a finished job again (same seeds)", true],
  ] as const;
  for (const [action, description, canWait] of controls) {
    const cmd = program.command(action).description(description).argument("<id>", "job id");
    if (canWait) cmd.option("--wait", "follow the job until it finishes (or is paused); exit 1 unless it completed").addOption(interval());
    cmd
      .option("--json", "print one JSON document on stdout")
      .action((id: string, opts) =>
        run(opts.json, (ctx) => handlers.control(ctx, action, id, { wait: Boolean(opts.wait), intervalMs: opts.interval ?? 1000 })),
      );
  }

  program
    .command("more")
    .description("Add variations to a finished job (per video; new seeds, numbered after the existing ones)")
    .argument("<id>", "job id")
    .requiredOption("-n, --variations <n>", "more variations per video (1–20)", intIn(1, 20, "--variations"))
    .option("--wait", "follow the job until it finishes or is paused; exit 1 unless it completed")
    .option("--json", "print one JSON document on stdout")
    .addOption(interval())
    .action((id: string, opts) =>
      run(opts.json, (ctx) => handlers.more(ctx, id, { variations: opts.variations, wait: Boolean(opts.wait), intervalMs: opts.interval })),
    );

  program
    .command("download")
    .description("Download a job's ZIP of finished variations")
    .argument("<id>", "job id")
    .option("-o, --output <dir>", "directory to save into", ".")
    .option("--unzip", "extract the ZIP into the directory (and remove it)")
    .option("--json", "print one JSON document on stdout")
    .action((id: string, opts) => run(opts.json, (ctx) => handlers.download(ctx, id, { output: opts.output, unzip: Boolean(opts.unzip) })));

  return program;
}

/** Runs the CLI on `argv` (without node and script); resolves with the exit code. Never throws. */
export async function runCli(argv: string[], io: Io, handlers: Handlers = realHandlers): Promise<ExitCode> {
  const state: RunState = { code: EXIT.ok, json: argv.includes("--json") };
  const program = buildProgram(io, handlers, state);
  try {
    if (argv.length === 0) {
      program.outputHelp({ error: true });
      return EXIT.usage;
    }
    await program.parseAsync(argv, { from: "user" });
    return state.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return EXIT.ok;
      // InvalidArgumentError thrown from an action (not from an option parser) is not printed by commander.
      if (err.code === "commander.invalidArgument" && !err.message.startsWith("error:")) io.stderr.write(`error: ${err.message}\n`);
      if (state.json) io.stdout.write(`${JSON.stringify({ error: { code: "usage", message: err.message } })}\n`);
      return EXIT.usage;
    }
    const e = toCliError(err);
    io.stderr.write(`video-refresher: ${printable(e.message)}\n`);
    if (state.json) io.stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message, ...(e.status ? { status: e.status } : {}), ...e.extra } }, null, 2)}\n`);
    return e.exitCode;
  } finally {
    // Bars hide the terminal's cursor until stopped.
    state.progress?.stop();
  }
}

/** The program (cli/bin.js): exits with the code once stdout has drained. */
export async function main(): Promise<never> {
  process.once("SIGINT", () => {
    if (process.stderr.isTTY) process.stderr.write("\x1b[?25h\n");
    process.exit(EXIT.interrupted);
  });
  const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });
  await new Promise<void>((res) => process.stdout.write("", () => res()));
  process.exit(code);
}
