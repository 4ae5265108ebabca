import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../client";
import { newId } from "../../ids";
import { ConflictError } from "../../errors";
import { MAX_VARIATIONS_PER_VIDEO_PER_JOB, type QuotaRequest, type UserLimits } from "../../limits";
import { jobs, type JobStatus } from "../../schema";
import { loadRecord } from "./load";
import { presentRecord, type Viewer } from "./present";
import { afterRefusedReopen, assertReopenable, HAS_QUEUED_WORK, loadForReopen, reopenGuard, reopenJobStatement, reopenKeyColumns, type Reopened } from "./reopen";

/** Finished jobs get more variations: completed, cancelled, and failed too (a failed source fails them again). */
const EXTENDABLE: readonly JobStatus[] = ["completed", "cancelled", "failed"];

/** `n` random seeds in [1, 2^31 - 1], distinct from each other and from `taken` (the job's unique seed index). */
function freshSeeds(n: number, taken: Set<number>): number[] {
  const seeds = new Set<number>();
  while (seeds.size < n) {
    for (const x of crypto.getRandomValues(new Uint32Array(n - seeds.size))) {
      const seed = x >>> 1;
      if (seed > 0 && !taken.has(seed)) seeds.add(seed);
    }
  }
  return [...seeds];
}

/**
 * More variations: `perSource` new queued variations for every source of a finished job, numbered after the
 * source's existing ones, with seeds new to the job; the job goes back to queued/processing (cancel fields, finish
 * time and expiry cleared: the expiry restarts when it finishes again) and its counts grow. One batch (see
 * reopen.ts): the insert is guarded by the job still being finished as read, not expired, and the owner's limits
 * (one more active job, the new variations queued); a concurrent reopen makes the job active first, so positions
 * and seeds read here cannot collide. Whether the source objects still exist is the edge's check (it has the bucket).
 * 409 `job_active`, 409 `too_many_variations` past MAX_VARIATIONS_PER_VIDEO_PER_JOB, 410 expired, quota errors as for
 * a new job. With `idempotencyKey`, a repeat answers the job (see replayOf): no second batch.
 */
export async function addVariations(
  db: Db,
  input: { jobId: string; viewer: Viewer; perSource: number; limits: UserLimits; idempotencyKey?: string | null },
  now: number,
): Promise<Reopened> {
  const { record, idem, replay } = await loadForReopen(db, input, `more:${input.perSource}`, now);
  if (replay) return replay;
  assertReopenable(record, EXTENDABLE, "job_active", "get more variations", now);
  // Read, not guarded in the batch: a concurrent reopen makes the job active first, and this batch then fails.
  const room = MAX_VARIATIONS_PER_VIDEO_PER_JOB - record.job.variationsPerVideo;
  if (input.perSource > room) {
    throw new ConflictError(
      "too_many_variations",
      `A job holds at most ${MAX_VARIATIONS_PER_VIDEO_PER_JOB} variations per video; this one has ${record.job.variationsPerVideo}` +
        (room > 0 ? `, so ask for at most ${room} more` : "") + ". Start a new job for more.",
      { field: "variations" },
    );
  }
  const taken = new Set(record.variations.map((v) => v.seed));
  const last = new Map<string, number>();
  for (const v of record.variations) last.set(v.sourceId, Math.max(last.get(v.sourceId) ?? 0, v.position));
  const sourcesInOrder = [...record.sources].sort((a, b) => a.position - b.position);
  const seeds = freshSeeds(sourcesInOrder.length * input.perSource, taken);
  const rows = sourcesInOrder.flatMap((s, si) =>
    Array.from({ length: input.perSource }, (_, k) => ({
      id: newId(),
      sourceId: s.id,
      position: (last.get(s.id) ?? 0) + k + 1,
      seed: seeds[si * input.perSource + k]!,
    })),
  );
  const request: QuotaRequest = { activeJobs: 1, queuedVariations: rows.length, storageBytes: 0 };
  const guard = reopenGuard(input.jobId, record.job.userId, [record.job.status], input.limits, request, now);
  // json_each keeps the order of the array, and with it the claim order (created_at ties fall back to rowid).
  const [, reopened] = await db.batch([
    db.run(sql`
      INSERT INTO variations (id, job_id, source_id, position, seed, status, progress, attempts, created_at)
      SELECT json_extract(r.value, '$.id'), ${input.jobId}, json_extract(r.value, '$.sourceId'),
        json_extract(r.value, '$.position'), json_extract(r.value, '$.seed'), 'queued', 0, 0, ${now}
      FROM json_each(${JSON.stringify(rows)}) r
      WHERE ${guard}
      ORDER BY r.key`),
    reopenJobStatement(db, input.jobId, input.viewer, and(eq(jobs.status, record.job.status), HAS_QUEUED_WORK)!, now, {
      totalVariations: sql`${jobs.totalVariations} + ${rows.length}`,
      variationsPerVideo: sql`${jobs.variationsPerVideo} + ${input.perSource}`,
      ...reopenKeyColumns(idem, now),
    }),
  ]);
  if (reopened.length === 0) {
    const allowed = [record.job.status];
    return await afterRefusedReopen(db, { ...input, allowed, code: "job_active", verb: "get more variations", request, idem }, now);
  }
  return { job: presentRecord(await loadRecord(db, input.jobId, input.viewer), now), replayed: false };
}
