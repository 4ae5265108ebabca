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
    if (!result.success) throw invalid(result.error);
    return result.data;
  });
}

/** A zod failure as the 400 the API answers: its first issue, naming the field. */
function invalid(error: z.ZodError): ValidationError {
  const issue = error.issues[0]!;
  const field = issue.path.join(".") || undefined;
  return new ValidationError(field ? `${field}: ${issue.message}` : issue.message, field);
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

/** The media type of a Content-Type header, as Hono's JSON validator reads it: before any `;`, trimmed. */
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * The body of a route whose JSON body is optional, validated with `schema`: no body (or only whitespace) is `{}`, a
 * JSON body is parsed (400 when malformed) and validated, and any other body is a 415 — read as `{}` it would get
 * the defaults the client did not ask for (`keepPreviousSeconds: 0` sent as text/plain, or as application/json5,
 * would keep a leaked secret signing for a day). Whether there is a body is read from the body itself, not from
 * framing headers. JSON bodies are size-limited by jsonBodyLimit; of another type only the first chunk is read.
 */
export async function readOptionalJson<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  const mediaType = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
  let text = "";
  if (JSON_MEDIA_TYPE.test(mediaType)) {
    text = await req.text();
  } else if (req.body) {
    const reader = req.body.getReader();
    try {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        if (chunk.value.byteLength > 0) {
          throw new UnsupportedMediaTypeError("Send no body, or a JSON one (Content-Type: application/json)", "unsupported_content_type");
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }
  let value: unknown = {};
  if (text.trim() !== "") {
    try {
      value = JSON.parse(text);
    } catch {
      throw new ValidationError("body: malformed JSON", "body");
    }
  }
  const result = schema.safeParse(value);
  if (!result.success) throw invalid(result.error);
  return result.data;
}
