import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { OutputDigest } from "../db/queries/variations";
import { openRegularFile } from "./workdir";

/**
 * SHA-256 and CRC-32 of a file in one streaming read. Recorded with the completion, they let the edge write the ZIP
 * download's headers and manifests (and serve any byte range of it) without reading the outputs it does not send.
 */
export async function digestFile(path: string, signal?: AbortSignal): Promise<OutputDigest & { bytes: number }> {
  const hash = createHash("sha256");
  let crc = 0;
  let bytes = 0;
  const fh = await openRegularFile(path);
  try {
    for await (const chunk of fh.createReadStream({ signal, highWaterMark: 1 << 20, autoClose: false }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      crc = crc32(chunk, crc);
      bytes += chunk.length;
    }
  } finally {
    await fh.close();
  }
  return { sha256: hash.digest("hex"), crc32: crc >>> 0, bytes };
}
