import type { Db } from "../../db/client";
import { findJobByIdempotencyKey, type JobView } from "../../db/queries/jobs";
import { IdempotencyKey, parseWith } from "./schemas";

/** The request header that names one job creation (draft-ietf-httpapi-idempotency-key-header). */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";
/** Set on an answer that names the job an earlier request with the same key created. */
export const REPLAYED_HEADER = "Idempotent-Replayed";

/** The validated key of a request, or null without one (400 for a malformed one, before the body is read). */
export function idempotencyKeyOf(req: Request): string | null {
  const raw = req.headers.get(IDEMPOTENCY_HEADER);
  return raw === null ? null : parseWith(IdempotencyKey, raw, IDEMPOTENCY_HEADER);
}

/**
 * Creates a job at most once per user and key: a retry after a lost answer gets the job the first request created
 * (`replayed`), without reading its body again. A request that fails is looked up once more, because its failure may
 * come from its twin having won: the uploads it names were consumed by it (upload_used), its job row collided on
 * the key's unique index, or (form upload) its twin's job committed between the first look and its ingest.
 */
export async function createJobOnce(
  deps: { db: Db; clock?: () => number },
  input: { userId: string; key: string | null; request: Request },
  create: () => Promise<JobView>,
): Promise<{ job: JobView; replayed: boolean }> {
  const { db, clock = Date.now } = deps;
  const { key, userId } = input;
  if (key === null) return { job: await create(), replayed: false };
  const earlier = await findJobByIdempotencyKey(db, { userId, key }, clock());
  if (earlier) {
    // The route's lingering wrapper drains what the client still sends; none of it is stored.
    await input.request.body?.cancel().catch(() => {});
    return { job: earlier, replayed: true };
  }
  try {
    return { job: await create(), replayed: false };
  } catch (err) {
    const twin = await findJobByIdempotencyKey(db, { userId, key }, clock()).catch(() => null);
    if (twin) return { job: twin, replayed: true };
    throw err;
  }
}
