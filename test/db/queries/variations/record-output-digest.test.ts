import { describe, expect, it } from "vitest";
import { claimVariations, finishVariation, recordOutputDigest } from "../../../../db/queries/variations";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, getVariationRows, seedJob } from "../../../helpers/seed";

const server = useTestLibsql();

const NOW = 1_700_000_000_000;
const A = { sha256: "a".repeat(64), crc32: 1 };
const B = { sha256: "b".repeat(64), crc32: 2 };

/** A database of its own with one job whose one variation completed with a 50-byte output (and `digest`, if given). */
async function completedOutput(name: string, digest?: typeof A) {
  const { db } = await freshDb(server, name);
  const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1 });
  const [id] = job.variationIds as [string];
  await claimVariations(db, { runnerId: "r1", leaseMs: 30_000, now: NOW, limit: 1 });
  const key = `outputs/${job.jobId}/${id}.a1.mp4`;
  await finishVariation(db, { variationId: id, runnerId: "r1", attempt: 1, outputKey: key, outputSize: 50, digest, now: NOW + 1 });
  return { db, job, key };
}

describe("recordOutputDigest", () => {
  it("keeps the digest of a recorded output that has none, once: a later one never overwrites it", async () => {
    const { db, job, key } = await completedOutput("digest_once");

    // Another job's id, another key or another size: not this output.
    expect(await recordOutputDigest(db, { jobId: "other", outputKey: key, outputSize: 50, digest: A })).toBe(false);
    expect(await recordOutputDigest(db, { jobId: job.jobId, outputKey: `${key}x`, outputSize: 50, digest: A })).toBe(false);
    expect(await recordOutputDigest(db, { jobId: job.jobId, outputKey: key, outputSize: 51, digest: A })).toBe(false);
    expect((await getVariationRows(db, job.jobId))[0]).toMatchObject({ outputSha256: null, outputCrc32: null });

    expect(await recordOutputDigest(db, { jobId: job.jobId, outputKey: key, outputSize: 50, digest: A })).toBe(true);
    expect(await recordOutputDigest(db, { jobId: job.jobId, outputKey: key, outputSize: 50, digest: B })).toBe(false);
    expect((await getVariationRows(db, job.jobId))[0]).toMatchObject({ outputSha256: A.sha256, outputCrc32: A.crc32 });
  });

  it("never touches an output whose runner recorded its digest with the completion", async () => {
    const { db, job, key } = await completedOutput("digest_runner", A);
    expect(await recordOutputDigest(db, { jobId: job.jobId, outputKey: key, outputSize: 50, digest: B })).toBe(false);
    expect((await getVariationRows(db, job.jobId))[0]).toMatchObject({ outputSha256: A.sha256, outputCrc32: A.crc32 });
  });
});
