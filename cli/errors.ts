/** Exit codes, documented in docs/api.md ("Command-line client"). */
export const EXIT = { ok: 0, failed: 1, usage: 2, auth: 3, network: 4, interrupted: 130 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line (never a stack trace) and turns into an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
    readonly code = "error",
    readonly status?: number,
    /** Fields for the `--json` error object beside code and message (e.g. the job a failed wait was watching). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** The API answered with an error: `{error:{code,message}}`; 401/403 are authentication failures (exit 3). */
export function apiError(status: number, body: unknown): CliError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof err?.code === "string" ? err.code : `http_${status}`;
  const message = typeof err?.message === "string" ? err.message : `HTTP ${status}`;
  // A refusal may name the job it is about beside the error (409 upload_used: the job the upload fed).
  const jobId = (body as { jobId?: unknown } | undefined)?.jobId;
  const extra = typeof jobId === "string" ? { jobId } : undefined;
  return new CliError(message, status === 401 || status === 403 ? EXIT.auth : EXIT.failed, code, status, extra);
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE",
  "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_SOCKET", "UND_ERR_CLOSED",
]);

/** Connection refused, DNS, resets and timeouts, as undici's fetch reports them (the cause carries the code). */
export function isNetworkError(err: unknown): boolean {
  for (let e = err as { name?: string; code?: string; cause?: unknown; message?: string } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.name === "TimeoutError" || (e.code && NETWORK_CODES.has(e.code))) return true;
    if (e.name === "TypeError" && e.message === "fetch failed") return true;
  }
  return false;
}

/** The innermost cause's code or message, for "cannot reach …: ECONNREFUSED". */
export function networkReason(err: unknown): string {
  let e = err as { code?: string; message?: string; cause?: unknown; name?: string };
  while (e.cause && typeof e.cause === "object") e = e.cause as typeof e;
  if (e.name === "TimeoutError") return "timed out";
  return e.code ?? e.message ?? String(e);
}

export function toCliError(err: unknown, url?: string): CliError {
  if (err instanceof CliError) return err;
  if (isNetworkError(err)) return new CliError(`cannot reach ${url ?? "the server"}: ${networkReason(err)}`, EXIT.network, "network");
  const e = err as { code?: string; message?: string };
  return new CliError(e?.message ?? String(err), EXIT.failed, e?.code ?? "error");
}
