import { Hono } from "hono";
import { userLimitsFrom } from "../../db/limits";
import { SOURCE_LIMIT_DEFAULTS } from "../../db/source-limits";
import { getUserUsage } from "../../db/queries/quotas";
import type { AppEnv } from "../env";
import { requireUser } from "../lib/auth";

/** The signed-in user's limits and what they use of them (the upload page shows both). */
export const limits = new Hono<AppEnv>().use(requireUser).get("/", async (c) => {
  const config = c.get("config");
  const usage = await getUserUsage(c.get("db"), c.get("user").id);
  return c.json({
    limits: {
      ...userLimitsFrom(config),
      uploadBytes: config.MAX_UPLOAD_BYTES,
      jsonBodyBytes: config.JSON_BODY_LIMIT_BYTES,
      // Runners check these when they probe a source (their defaults; an operator may set others per runner).
      sourceSeconds: SOURCE_LIMIT_DEFAULTS.maxSeconds,
      sourceDimension: SOURCE_LIMIT_DEFAULTS.maxDimension,
    },
    usage,
  });
});
