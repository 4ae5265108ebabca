import type { MiddlewareHandler, ValidationTargets } from "hono";
import { bodyLimit } from "hono/body-limit";
import { validator } from "hono/validator";
import type { z } from "zod";
import { PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from "../../db/errors";
import type { AppEnv } from "../env";

/**
 * zod validation middleware: the first issue becomes a 400 naming the field. Malformed JSON is a 400 too
 * (Hono's validator throws an HTTPException for it, mapped by onError).
 */
export function validate<T extends keyof ValidationTargets, S extends z.ZodType>(target: T, schema: S) {
  return validator(target, (value): z.output<S> => {
    const result = schema.safeParse(value);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      const field = issue.path.join(".") || undefined;
      throw new ValidationError(field ? `${field}: ${issue.message}` : issue.message, field);
    }
    return result.data;
  });
}

/** Any JSON media type, parameters or not; a superset of what the JSON readers (validator, jobs) accept. */
const JSON_TYPE = /^application\/([\w.-]+\+)?json/i;

/**
 * JSON bodies over JSON_BODY_LIMIT_BYTES → 413 `too_large`, before the handler reads them: a declared
 * Content-Length is refused without reading a byte, a chunked body once it passes the limit. Other bodies (video
 * uploads, parts) are not touched; the JSON readers never read a body of another type.
 */
export function jsonBodyLimit(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!JSON_TYPE.test(c.req.header("content-type") ?? "")) return next();
    const maxSize = c.get("config").JSON_BODY_LIMIT_BYTES;
    return bodyLimit({
      maxSize,
      onError: () => {
        throw new PayloadTooLargeError(`JSON bodies are limited to ${maxSize} bytes`);
      },
    })(c, next);
  };
}

/**
 * For routes whose JSON body is optional: no body is `{}`, a JSON body is validated, and any other body is a 415.
 * Hono's json validator reads a body of another type as `{}`, so `keepPreviousSeconds: 0` sent as text/plain would
 * silently get the defaults — the opposite of what was asked.
 */
export function optionalJsonBody(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const length = c.req.header("content-length");
    const hasBody = (length !== undefined && length !== "0") || c.req.header("transfer-encoding") !== undefined;
    if (hasBody && !JSON_TYPE.test(c.req.header("content-type") ?? "")) {
      throw new UnsupportedMediaTypeError("Send no body, or a JSON one (Content-Type: application/json)", "unsupported_content_type");
    }
    return next();
  };
}
