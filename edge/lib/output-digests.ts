import type { Db } from "../../db/client";
import { NotFoundError } from "../../db/errors";
import { toHex } from "../../db/ids";
import { recordOutputDigest } from "../../db/queries/variations";
import { crc32 } from "./crc32";
import type { DigestedEntry, NamedEntry } from "./zip";

/**
 * The entries with their digests. Runners record an output's SHA-256 and CRC-32 with its completion; an output
 * recorded before they did is read whole here once, and its digest kept (a compare-and-set that never overwrites
 * one), so from then on its job's ZIP — and any range of it — is laid out without reading it.
 */
export async function withOutputDigests(
  deps: { db: Db; bucket: R2Bucket },
  jobId: string,
  entries: NamedEntry[],
): Promise<DigestedEntry[]> {
  const out: DigestedEntry[] = [];
  for (const e of entries) {
    if (e.sha256 !== null && e.crc32 !== null) {
      out.push({ ...e, sha256: e.sha256, crc32: e.crc32 });
      continue;
    }
    const digest = await digestObject(deps.bucket, e);
    // Keeping it only saves the next download this read: this one goes on with the digest in hand either way.
    await recordOutputDigest(deps.db, { jobId, outputKey: e.key, outputSize: e.size, digest }).catch((err: unknown) =>
      console.error("output digest not kept", e.key, err),
    );
    out.push({ ...e, ...digest });
  }
  return out;
}

async function digestObject(bucket: R2Bucket, e: NamedEntry): Promise<{ sha256: string; crc32: number }> {
  const obj = await bucket.get(e.key);
  if (!obj || obj.size !== e.size) {
    await obj?.body.cancel();
    console.error("recorded output missing or resized", e.key, obj?.size ?? null, e.size);
    throw new NotFoundError(`${e.name} is no longer in storage`, "output_missing");
  }
  const sha = new crypto.DigestStream("SHA-256");
  const writer = sha.getWriter();
  let crc = 0;
  for await (const chunk of obj.body as unknown as AsyncIterable<Uint8Array>) {
    crc = crc32(chunk, crc);
    await writer.write(chunk);
  }
  await writer.close();
  return { sha256: toHex(await sha.digest), crc32: crc };
}
