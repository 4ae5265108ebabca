import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { createInterface } from "node:readline";
import { apiClient, call, timeout, type Api, type Job, type Schemas } from "./client";
import { configFile, deleteConfig, normaliseUrl, readConfig, requireSafeTransport, resolveAuth, storedTokenFor, writeConfig, type StoredConfig } from "./config";
import type { Ctx } from "./context";
import { deviceCookie, deviceCookieOf, saveDeviceCookie } from "./devices";
import { downloadJob } from "./download";
import { apiError, CliError, EXIT, toCliError, type ExitCode } from "./errors";
import { printable } from "./printable";
import { formatBytes } from "./progress";
import { statFiles, uploadAndCreateJob, withKeyedRetries, withRetries } from "./upload";
import { describeJob, watchJob } from "./watch";

export type JobStatus = Job["status"];

export interface SubmitOptions {
  variations: number;
  wait: boolean;
  intervalMs: number;
  /** Absent: the server's default look. */
  effects?: Schemas["EffectsRequest"];
}
/** The job-control routes that take a job id and answer the job. */
export type JobAction = "pause" | "resume" | "retry";
export interface ActionOptions {
  wait: boolean;
  intervalMs: number;
}
export interface LoginOptions {
  url: string;
  token?: string;
  email?: string;
}
export interface LogoutOptions {
  /** Remove the stored credentials even when the token could not be revoked. */
  forget?: boolean;
}
export interface CancelOptions {
  reason?: string;
  allQueued: boolean;
}
export interface DownloadOptions {
  output: string;
  unzip: boolean;
}

/** The command implementations; main.ts wires them to the argument parser (tests can pass fakes). */
export interface Handlers {
  login(ctx: Ctx, opts: LoginOptions): Promise<ExitCode>;
  logout(ctx: Ctx, opts: LogoutOptions): Promise<ExitCode>;
  submit(ctx: Ctx, files: string[], opts: SubmitOptions): Promise<ExitCode>;
  ls(ctx: Ctx, opts: { status?: JobStatus; limit: number }): Promise<ExitCode>;
  status(ctx: Ctx, id: string, opts: { watch: boolean; intervalMs: number }): Promise<ExitCode>;
  cancel(ctx: Ctx, ids: string[], opts: CancelOptions): Promise<ExitCode>;
  download(ctx: Ctx, id: string, opts: DownloadOptions): Promise<ExitCode>;
  control(ctx: Ctx, action: JobAction, id: string, opts: ActionOptions): Promise<ExitCode>;
  more(ctx: Ctx, id: string, opts: ActionOptions & { variations: number }): Promise<ExitCode>;
}

async function connect(ctx: Ctx): Promise<{ api: Api; url: string }> {
  const was = await readConfig(ctx.env);
  const { url, token } = await resolveAuth(ctx.env);
  // A token from the environment is the caller's to manage; one from the config follows a newer login's into the
  // same account.
  const newer = ctx.env.VIDEO_REFRESHER_TOKEN ? undefined : () => storedTokenFor(ctx.env, url, was);
  return { api: apiClient(url, token, {}, newer), url };
}

const exitFor = (job: Job): ExitCode => (job.status === "completed" ? EXIT.ok : EXIT.failed);

/** Prints the job a control route answered, after following it when asked; a followed job exits 0 only if completed. */
async function report(ctx: Ctx, api: Api, url: string, job: Job, opts: ActionOptions): Promise<ExitCode> {
  const final = opts.wait ? await watchJob(api, url, job.id, ctx.progress, { intervalMs: opts.intervalMs }) : job;
  ctx.progress.stop();
  ctx.result(final, describeJob(final));
  return opts.wait ? exitFor(final) : EXIT.ok;
}

/** Reads answers from a terminal (password without echo) or, when stdin is not a terminal, one line each. */
function prompter(ctx: Ctx) {
  const lines: string[] = [];
  const waiting: ((line: string | undefined) => void)[] = [];
  let ended = false;
  let interrupted = false;
  let rl: ReturnType<typeof createInterface> | undefined;
  const tty = Boolean(ctx.stdin.isTTY);
  const start = () => {
    if (rl) return;
    rl = createInterface({ input: ctx.stdin, output: tty ? ctx.stderr : undefined, terminal: tty });
    rl.on("line", (line) => (waiting.length ? waiting.shift()!(line) : lines.push(line)));
    // A terminal in raw mode hands Ctrl-C to readline, not to the process's SIGINT handler (cli/main.ts): without
    // this, readline just closes and the missing answer would read as a usage error.
    rl.on("SIGINT", () => {
      interrupted = true;
      rl?.close();
    });
    rl.on("close", () => {
      ended = true;
      for (const w of waiting.splice(0)) w(undefined);
    });
  };
  return {
    async ask(question: string, secret = false): Promise<string> {
      start();
      let muted = false;
      const r = rl as unknown as { _writeToOutput?: (s: string) => void };
      const original = r._writeToOutput;
      if (tty) {
        ctx.stderr.write(question);
        if (secret) {
          muted = true;
          // readline echoes typed characters through _writeToOutput; swallow them for the password.
          r._writeToOutput = (s: string) => {
            if (!muted) original?.call(rl, s);
          };
        }
      }
      const answer = lines.length ? lines.shift() : ended ? undefined : await new Promise<string | undefined>((res) => waiting.push(res));
      if (secret && tty) {
        muted = false;
        r._writeToOutput = original;
        ctx.stderr.write("\n");
      }
      if (answer === undefined && interrupted) throw new CliError("interrupted", EXIT.interrupted, "interrupted");
      if (answer === undefined) throw new CliError(`no answer for "${question.trim()}" on standard input`, EXIT.usage, "usage");
      return answer.trim();
    },
    close: () => rl?.close(),
  };
}

export const handlers: Handlers = {
  async login(ctx, opts) {
    const url = normaliseUrl(opts.url);
    requireSafeTransport(url, ctx.env);
    if (opts.token) {
      // `--token -` reads it from stdin (asked for without echo on a terminal): a token on the command line is in
      // the shell's history and, while the command runs, in every user's `ps`.
      let token = opts.token;
      if (token === "-") {
        const ask = prompter(ctx);
        try {
          token = (await ask.ask("API token: ", true)).trim();
        } finally {
          ask.close();
        }
        if (!token) throw new CliError("no API token on stdin", EXIT.usage, "usage");
      }
      const { data } = await call(url, apiClient(url, token).GET("/api/me", { signal: timeout() }));
      const before = await readConfig(ctx.env).catch(() => null);
      // The same token given again keeps its id: a later login or logout can still revoke it.
      const tokenId = before?.token === token && before.url === url ? before.tokenId : undefined;
      await writeConfig(ctx.env, { url, token, email: data.user.email, ...(tokenId ? { tokenId } : {}) });
      await revokeReplaced(ctx, before, token);
      ctx.result({ url, user: data.user, configFile: configFile(ctx.env) }, `Logged in to ${url} as ${data.user.email} (token saved in ${configFile(ctx.env)})`);
      return EXIT.ok;
    }
    const ask = prompter(ctx);
    let email: string;
    let password: string;
    try {
      email = opts.email ?? (await ask.ask("Email: "));
      password = await ask.ask("Password: ", true);
    } finally {
      ask.close();
    }
    const device = await deviceCookie(ctx.env, url, email);
    const anonymous = apiClient(url, undefined, device ? { cookie: device } : {});
    const { data: signedIn, response } = await call(url, anonymous.POST("/api/auth/login", { body: { email, password }, signal: timeout() }));
    const newDevice = deviceCookieOf(response.headers.getSetCookie());
    if (newDevice) await saveDeviceCookie(ctx.env, url, email, newDevice).catch(() => {});
    // The session cookie (its name depends on http/https); cookies being cleared (empty value) are left out.
    const cookie = response.headers
      .getSetCookie()
      .map((c) => c.split(";")[0]!.trim())
      .filter((kv) => kv.includes("=") && !kv.endsWith("="))
      .join("; ");
    // Cookie-authenticated writes are CSRF-checked by Origin: this client speaks for the site's own origin.
    const session = apiClient(url, undefined, { cookie, origin: new URL(url).origin });
    try {
      const name = `video-refresher CLI on ${hostname()} (${new Date().toISOString().slice(0, 10)})`;
      const before = await readConfig(ctx.env).catch(() => null);
      // One key for every try: a try whose answer was lost made the token, and the next gets that token with a new
      // secret instead of leaving a second, never-seen token on the account. Each try's secret voids the one before,
      // and a try given up on (its timeout) may still land after a later one: a secret is kept only once it works,
      // and that first use (lastUsedAt) ends reissuing, so no late try can void it afterwards.
      const key = randomBytes(16).toString("hex");
      const { data: created } = await withRetries(
        async () => {
          const made = await call(url, session.POST("/api/tokens", { body: { name } as Schemas["CreateTokenBody"], headers: { "Idempotency-Key": key }, signal: timeout() }));
          const me = await apiClient(url, made.data.token).GET("/api/me", { signal: timeout() });
          if (me.response.status === 401) throw new CliError("a later try of this login replaced the token's secret", EXIT.failed, "token_replaced");
          if (!me.response.ok) throw apiError(me.response.status, me.error);
          return made;
        },
        {
          tries: 3,
          baseMs: 1000,
          // A twin of this key still being answered (a try given up on): the edge says to send it again; or that
          // twin landed after this try and voided its secret: the next try reissues it once more.
          alsoRetry: (err) => err instanceof CliError && (err.code === "idempotency_key_in_flight" || err.code === "token_replaced"),
          onRetry: (attempt, err) => ctx.note(`creating the API token: ${(err as Error).message}; trying again (${attempt + 1} of 3)`),
        },
      );
      await writeConfig(ctx.env, { url, token: created.token, tokenId: created.id, email: signedIn.user.email });
      await revokeReplaced(ctx, before, created.token);
      ctx.result(
        { url, user: signedIn.user, tokenId: created.id, configFile: configFile(ctx.env) },
        `Logged in to ${url} as ${signedIn.user.email}; API token "${name}" saved in ${configFile(ctx.env)}`,
      );
    } finally {
      // The session was only needed to make the token.
      await session.POST("/api/auth/logout", { signal: timeout() }).catch(() => {});
    }
    return EXIT.ok;
  },

  async logout(ctx, opts) {
    const stored = await readConfig(ctx.env);
    if (!stored) {
      ctx.result({ loggedOut: false, revoked: false, reason: "not logged in" }, "Not logged in.");
      return EXIT.ok;
    }
    let revoked = false;
    let reason: string | undefined;
    // A login stored before http was refused: sending the token again in clear, to revoke it, exposes it once more.
    const clear = (() => {
      try {
        requireSafeTransport(stored.url, ctx.env);
        return null;
      } catch (err) {
        return err as CliError;
      }
    })();
    // Only a token the CLI made is sent (to revoke it); one given with --token is only forgotten here.
    if (clear && stored.tokenId && !opts.forget) {
      throw new CliError(`${clear.message}; logout --forget removes the stored credentials without revoking the token`, clear.exitCode, clear.code);
    }
    if (clear && stored.tokenId) {
      reason = "the API token was not revoked (its server is plain http); revoke it on the tokens page";
    } else if (stored.tokenId) {
      const e = await revokeStoredToken(stored.url, stored.token, stored.tokenId, timeout());
      if (!e) revoked = true;
      else if (!opts.forget) {
        // Deleting the file now would leave a working token on the server that nothing here can name any more.
        throw new CliError(
          `could not revoke the API token (${e.message}); you are still logged in: run logout again, or logout --forget to remove the stored credentials without revoking`,
          e.exitCode,
          e.code,
          e.status,
        );
      } else reason = `the API token was not revoked (${e.message}); revoke it on the tokens page`;
    } else {
      reason = "the token was given with --token; revoke it on the tokens page if it should stop working";
    }
    await deleteConfig(ctx.env);
    if (reason) ctx.note(reason);
    ctx.result({ loggedOut: true, revoked, ...(reason ? { reason } : {}) }, revoked ? "Logged out; the API token was revoked." : "Logged out (local credentials removed).");
    return EXIT.ok;
  },

  async submit(ctx, paths, opts) {
    const files = await statFiles(paths);
    const { api, url } = await connect(ctx);
    let { job, uploads } = await uploadAndCreateJob({ api, url, env: ctx.env, progress: ctx.progress }, files, opts.variations, opts.effects);
    ctx.note(`job ${job.id} ${job.status}: ${files.length} file(s), ${opts.variations} variation(s) each`);
    if (opts.wait) job = await watchJob(api, url, job.id, ctx.progress, { intervalMs: opts.intervalMs });
    ctx.progress.stop();
    ctx.result({ job, uploads }, opts.wait ? describeJob(job) : job.id);
    return opts.wait ? exitFor(job) : EXIT.ok;
  },

  async ls(ctx, opts) {
    const { api, url } = await connect(ctx);
    const { data } = await call(url, api.GET("/api/jobs", { params: { query: { status: opts.status, limit: opts.limit } }, signal: timeout() }));
    // Cell by cell (see printable): an admin lists other users' file names, and a line break in one must not
    // start a row of its own.
    const rows = data.jobs.map((j) =>
      [j.id, j.status, `${Math.round(j.progress)}%`, `${j.completedVariations}/${j.totalVariations}`, j.createdAt, j.files.map((f) => f.name).join(", ")].map(printable),
    );
    const header = ["ID", "STATUS", "PROGRESS", "DONE", "CREATED", "FILES"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const text = [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
    ctx.result(data, rows.length ? text : "No jobs.");
    return EXIT.ok;
  },

  async status(ctx, id, opts) {
    const { api, url } = await connect(ctx);
    const job = opts.watch
      ? await watchJob(api, url, id, ctx.progress, { intervalMs: opts.intervalMs })
      : (await call(url, api.GET("/api/jobs/{id}", { params: { path: { id } }, signal: timeout() }))).data;
    ctx.progress.stop();
    ctx.result(job, describeJob(job));
    return opts.watch ? exitFor(job) : EXIT.ok;
  },

  async cancel(ctx, ids, opts) {
    if (opts.allQueued && ids.length) throw new CliError("give job ids or --all-queued, not both", EXIT.usage, "usage");
    if (!opts.allQueued && !ids.length) throw new CliError("give at least one job id, or --all-queued", EXIT.usage, "usage");
    const { api, url } = await connect(ctx);
    const reason = opts.reason;
    if (ids.length === 1) {
      const { data: job } = await call(
        url,
        api.POST("/api/jobs/{id}/cancel", { params: { path: { id: ids[0]! } }, body: reason ? { reason } : {}, signal: timeout() }),
      );
      const results = [{ id: job.id, status: job.status, previousStatus: job.previousStatus ?? null }];
      ctx.result({ results, job }, `${job.id}: ${job.previousStatus ?? "?"} → ${job.status}${job.status === "cancelling" ? " (runners are stopping; see `status --watch`)" : ""}`);
      return EXIT.ok;
    }
    const body: Schemas["BulkCancelBody"] = opts.allQueued ? { status: "queued", reason } : { ids, reason };
    const { data } = await call(url, api.POST("/api/jobs/cancel", { body, signal: timeout() }));
    const text = data.results.length
      ? data.results.map((r) => printable(`${r.id}: ${r.error ? `not cancelled (${r.error})` : `${r.previousStatus} → ${r.status}`}`)).join("\n")
      : "No queued jobs.";
    ctx.result(data, text);
    return data.results.some((r) => r.error) ? EXIT.failed : EXIT.ok;
  },

  async control(ctx, action, id, opts) {
    const { api, url } = await connect(ctx);
    const path = `/api/jobs/{id}/${action}` as const;
    // One key for every try: a try whose answer was lost did the work, and the next is answered with the job instead
    // of 409 job_active. Pause answers a repeat with the paused job by itself.
    const headers = action === "pause" ? {} : { "Idempotency-Key": randomBytes(16).toString("hex") };
    const send = () => call(url, api.POST(path, { params: { path: { id } }, headers, signal: timeout() }));
    const { data: job, response } = await withKeyedRetries(send, { what: action, log: ctx.note });
    const stopping = action === "pause" && response.status === 202 ? " (runners are still stopping)" : "";
    ctx.note(`${job.id}: ${action} → ${job.status}${stopping}`);
    return report(ctx, api, url, job, opts);
  },

  async more(ctx, id, opts) {
    const { api, url } = await connect(ctx);
    const headers = { "Idempotency-Key": randomBytes(16).toString("hex") };
    const body = { variations: opts.variations };
    // One key for every try: a lost answer's try is answered with the job, never a second batch of variations.
    const send = () => call(url, api.POST("/api/jobs/{id}/more", { params: { path: { id } }, body, headers, signal: timeout() }));
    const { data: job } = await withKeyedRetries(send, { what: "more", log: ctx.note });
    ctx.note(`${job.id}: ${opts.variations} more variation(s) per video → ${job.status}`);
    return report(ctx, api, url, job, opts);
  },

  async download(ctx, id, opts) {
    const { api, url } = await connect(ctx);
    const result = await downloadJob(api, url, id, opts.output, ctx.progress, opts.unzip);
    ctx.progress.stop();
    const text = result.extracted
      ? `Extracted ${result.extracted.length} file(s) into ${opts.output}`
      : `Saved ${result.file} (${formatBytes(result.bytes)}${result.resumedFrom ? `, resumed after ${formatBytes(result.resumedFrom)}` : ""})`;
    ctx.result(result, text);
    return EXIT.ok;
  },
};

/**
 * Revokes the token the config held before a login replaced it, when the CLI made it (one given with --token is the
 * user's to manage): nothing here can name it afterwards, and a CI that logs in on every build would pile tokens up
 * until the account's limit refuses the next login. It is revoked with itself, as `logout` does, so it works whatever
 * server or account the new login is for (a session of another account gets 404 for it). When that fails the user
 * is told that it still works, and its id.
 */
async function revokeReplaced(ctx: Ctx, before: StoredConfig | null | undefined, token: string): Promise<void> {
  if (!before?.tokenId || before.token === token) return;
  let why: string;
  try {
    // A login stored over plain http to another machine: sending the token again in clear would expose it again.
    requireSafeTransport(before.url, ctx.env);
    const e = await revokeStoredToken(before.url, before.token, before.tokenId, timeout(REVOKE_TIMEOUT_MS));
    if (!e) return;
    why = e.message;
  } catch (err) {
    why = toCliError(err, before.url).message;
  }
  ctx.note(`the API token ${before.tokenId} that this CLI made for ${before.url} before was not revoked (${why}) and still works: revoke it on the tokens page`);
}

/** DELETEs a token the CLI made, sent with itself: null once it is gone (401/404: already revoked, expired or deleted with its account), else why not. */
async function revokeStoredToken(url: string, token: string, tokenId: string, signal: AbortSignal): Promise<CliError | null> {
  try {
    await call(url, apiClient(url, token).DELETE("/api/tokens/{id}", { params: { path: { id: tokenId } }, signal }));
    return null;
  } catch (err) {
    const e = toCliError(err, url);
    return e.status === 401 || e.status === 404 ? null : e;
  }
}

/** The previous server may be down or gone: a login is not held up long by tidying after it. */
const REVOKE_TIMEOUT_MS = 10_000;

