import type { ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AppError, isDbBusy, isDbUnavailable, loggable, TooManyRequestsError } from "../../db/errors";
import type { AppEnv } from "../env";

/** The one place that turns thrown errors into `{ error: { code, message } }`. */
export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof AppError) {
    const { field, ...rest } = err.extra ?? {};
    if (err instanceof TooManyRequestsError) c.header("Retry-After", String(err.retryAfterSeconds));
    return c.json(
      { error: { code: err.code, message: err.message, ...(field ? { field } : {}) }, ...rest },
      err.status as ContentfulStatusCode,
    );
  }
  if (err instanceof HTTPException) {
    return c.json({ error: { code: httpCode(err.status), message: err.message || "Request failed" } }, err.status);
  }
  if (isDbUnavailable(err)) {
    return c.json({ error: { code: "db_unavailable", message: "The database is unreachable; try again shortly" } }, 503);
  }
  if (isDbBusy(err)) {
    // The statement that met the lock was refused (a batch as a whole), so the request may be sent again shortly, as
    // after db_unavailable; a 500 said "our bug", and was logged as one.
    c.header("Retry-After", "1");
    return c.json({ error: { code: "db_busy", message: "The database is busy; try again in a moment" } }, 503);
  }
  console.error(`[${c.get("requestId") ?? "-"}] unhandled error`, loggable(err), stackFrames(err));
  return c.json({ error: { code: "internal", message: "Something went wrong on our side" } }, 500);
};

export const onNotFound: NotFoundHandler<AppEnv> = (c) =>
  c.json({ error: { code: "not_found", message: `No route for ${c.req.method} ${new URL(c.req.url).pathname}` } }, 404);

function httpCode(status: number): string {
  if (status === 400) return "invalid_request";
  if (status === 401) return "unauthorized";
  if (status === 403) return "forbidden";
  if (status === 404) return "not_found";
  if (status === 413) return "too_large";
  return "http_error";
}

/** The first frames of an error's stack, without its message (which loggable already gave, cleaned). */
function stackFrames(err: unknown): string {
  const stack = err instanceof Error ? (err.stack ?? "") : "";
  return stack.split("\n").filter((line) => /^\s+at /.test(line)).slice(0, 5).join("\n");
}
