/**
 * Typed errors shared by db/ queries, the edge and the runner. The edge's single `onError` maps them to
 * `{ "error": { "code", "message" } }` with `status`; `extra` is merged into the body (e.g. the job on a 409).
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(message: string, readonly field?: string, code = "invalid_request") {
    super(400, code, message, field ? { field } : undefined);
  }
}
export class UnauthorizedError extends AppError {
  constructor(message = "Sign in to continue", code = "unauthorized") {
    super(401, code, message);
  }
}
export class ForbiddenError extends AppError {
  constructor(message = "You are not allowed to do this", code = "forbidden") {
    super(403, code, message);
  }
}
export class NotFoundError extends AppError {
  constructor(message = "Not found", code = "not_found") {
    super(404, code, message);
  }
}
export class ConflictError extends AppError {
  constructor(code: string, message: string, extra?: Record<string, unknown>) {
    super(409, code, message, extra);
  }
}
export class GoneError extends AppError {
  constructor(message: string, code = "gone") {
    super(410, code, message);
  }
}
export class UnprocessableError extends AppError {
  constructor(code: string, message: string) {
    super(422, code, message);
  }
}
export class PayloadTooLargeError extends AppError {
  constructor(message: string, code = "too_large") {
    super(413, code, message);
  }
}
export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string, code = "unsupported_media_type") {
    super(415, code, message);
  }
}
export class TooManyRequestsError extends AppError {
  constructor(message: string, readonly retryAfterSeconds: number, code = "too_many_requests") {
    super(429, code, message);
  }
}
export class ServiceUnavailableError extends AppError {
  constructor(message: string, code = "unavailable") {
    super(503, code, message);
  }
}

/** True when an error means the database could not be reached (as opposed to a bad statement). */
export function isDbUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { name, code, message } = e as { name?: string; code?: string; message?: string };
    if (name === "TimeoutError" || name === "AbortError") return true;
    if (code === "SERVER_ERROR" || code === "HRANA_WEBSOCKET_ERROR" || code === "ECONNREFUSED") return true;
    if (name === "TypeError" && /fetch|network|connect/i.test(message ?? "")) return true;
    if (/ECONNREFUSED|ECONNRESET|fetch failed|Network connection lost|connection refused/i.test(message ?? "")) return true;
  }
  return false;
}

/**
 * True when the database refused a statement because another writer held the lock past its busy timeout
 * (SQLITE_BUSY, as sqld and the local server answer). Nothing of that statement (or of its batch) was applied,
 * so it may be sent again: the same as a database that was briefly unreachable, but it did answer.
 */
export function isDbBusy(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: string; message?: string };
    if (typeof code === "string" && code.startsWith("SQLITE_BUSY")) return true;
    if (/SQLITE_BUSY|database is locked/.test(message ?? "")) return true;
  }
  return false;
}

/**
 * True when a statement failed on this constraint, e.g. `UNIQUE constraint failed: jobs.user_id, jobs.idempotency_key`
 * (`needle` is any part of SQLite's message). Walks the causes: drizzle and the libSQL client wrap the original.
 */
export function isConstraintFailure(err: unknown, needle: string): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (String((e as { message?: unknown }).message ?? "").includes(needle)) return true;
  }
  return false;
}

/**
 * An error as it may be logged: name and message, and its causes', without the bound values of a failed query.
 * drizzle's DrizzleQueryError puts the statement's parameters in its message, and those carry secrets (a webhook's
 * signing secret when it is created or rotated, password hashes); the SQL text and the driver's reason stay.
 */
export function loggable(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (!(e instanceof Error)) {
      parts.push(String(e));
      break;
    }
    const query = (e as { query?: unknown }).query;
    parts.push(typeof query === "string" && "params" in e ? `${e.name}: failed query: ${query} (parameters not logged)` : `${e.name}: ${e.message}`);
  }
  return parts.join(" ← caused by ");
}
