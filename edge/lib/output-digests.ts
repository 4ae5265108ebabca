import type { Db } from "../../db/client";
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
    const obj = await deps.bucket.get(e.key);
    if (!obj) throw new Error(`output object ${e.key} is missing`);
    const sha = new crypto.DigestStream("SHA-256");
    const writer = sha.getWriter();
    let crc = 0;
    let size = 0;
    for await (const chunk of obj.body as unknown as AsyncIterable<Uint8Array>) {
      crc = crc32(chunk, crc);
      size += chunk.length;
      await writer.write(chunk);
    }
    await writer.close();
    if (size !== e.size) throw new Error(`output object ${e.key} is ${size} bytes, recorded ${e.size}`);
    const digest = { sha256: [...new Uint8Array(await sha.digest)].map((b) => b.toString(16).padStart(2, "0")).join(""), crc32: crc };
    await recordOutputDigest(deps.db, { jobId, outputKey: e.key, digest });
    out.push({ ...e, ...digest });
  }
  return out;
}
