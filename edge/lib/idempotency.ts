import type { Db } from "../../db/client";
import { findJobByIdempotencyKey, type JobView, type QueueSnapshotSource } from "../../db/queries/jobs";
import { IdempotencyKey, parseWith } from "./schemas";

/** The request header that names one job creation (draft-ietf-httpapi-idempotency-key-header). */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";
/** Set on an answer that names the job an earlier request with the same key created. */
export const REPLAYED_HEADER = "Idempotent-Replayed";

/** How much of a replayed request's body is read and dropped (a form re-sent whole); past it, the body is cut off. */
const REPLAY_DISCARD_BYTES = 128 * 1024 * 1024;

/**
 * Reads a replayed request's body to its end, storing nothing. Not a cancel: workerd resets the connection of an
 * answer sent while the body is half read (lib/lingering.ts), and the lingering drain stops at 16 MiB, so a client
 * re-sending a 40 MiB form would get a reset instead of its job. Bounded: production caps a body near 100 MB.
 */
async function discard(body: ReadableStream<Uint8Array> | null): Promise<void> {
  if (!body) return;
  const reader = body.getReader();
  try {
    for (let read = 0; read <= REPLAY_DISCARD_BYTES; ) {
      const next = await reader.read();
      if (next.done) return;
      read += next.value.byteLength;
    }
    await reader.cancel();
  } catch {
    // The client went away: nobody is left to answer.
  }
}

/** The validated key of a request, or null without one (400 for a malformed one, before the body is read). */
export function idempotencyKeyOf(req: Request): string | null {
  const raw = req.headers.get(IDEMPOTENCY_HEADER);
  return raw === null ? null : parseWith(IdempotencyKey, raw, IDEMPOTENCY_HEADER);
}

/**
 * Creates something at most once per user and key: a retry after a lost answer gets what the first request created
 * (`replayed`). A request that fails is looked up once more, because its failure may come from a twin with the same
 * key having won (its insert collided on the key's unique index, or consumed what this one needed). The key is held
 * by the created row alone, so a request that died mid-way never locks it. `request`: a replay's body is read to its
 * end and dropped (see discard).
 */
export async function createOnce<T>(
  input: { key: string | null; request?: Request },
  find: () => Promise<T | null>,
  create: () => Promise<T>,
): Promise<{ value: T; replayed: boolean }> {
  if (input.key === null) return { value: await create(), replayed: false };
  const earlier = await find();
  if (earlier !== null) {
    if (input.request) await discard(input.request.body);
    return { value: earlier, replayed: true };
  }
  try {
    return { value: await create(), replayed: false };
  } catch (err) {
    const twin = await find().catch(() => null);
    if (twin !== null) return { value: twin, replayed: true };
    throw err;
  }
}

/** createOnce for jobs: the upload ids of a JSON body or the files of a form (lib/ingest.ts) make the job. */
export async function createJobOnce(
  deps: { db: Db; clock?: () => number; queue?: QueueSnapshotSource },
  input: { userId: string; key: string | null; request: Request },
  create: () => Promise<JobView>,
): Promise<{ job: JobView; replayed: boolean }> {
  const { db, clock = Date.now } = deps;
  const { key, userId } = input;
  // `queue`: the isolate's shared snapshot. A replay answers the job with its queue estimate, and a client looping
  // one key read every user's pending work per request without it.
  const find = () => (key === null ? Promise.resolve(null) : findJobByIdempotencyKey(db, { userId, key }, clock(), deps.queue));
  const { value, replayed } = await createOnce({ key, request: input.request }, find, create);
  return { job: value, replayed };
}
