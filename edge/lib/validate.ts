import type { ValidationTargets } from "hono";
import { validator } from "hono/validator";
import type { z } from "zod";
import { ValidationError } from "../../db/errors";

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
