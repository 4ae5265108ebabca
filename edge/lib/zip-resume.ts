import { toHex } from "../../db/ids";
import { parseRange, rangeNotSatisfiable } from "./range";
import { zipFiles, type DigestedEntry } from "./zip";
import { layoutZip, streamZipRange, type ZipLayout } from "./zip-writer";

/**
 * The job's ZIP download, whole or any byte range of it (Range + If-Range on GET /api/jobs/:id/download).
 *
 * The archive is laid out from recorded fields only (attempt-scoped output keys, which never change bytes once
 * recorded, with their sizes, digests and times), so the same job state gives the same bytes, and a range costs
 * R2 reads of just the outputs it covers: a download resumed near the end reads no output before it. A client
 * resuming with `If-Range: <etag>` after the job changed (more variations, a re-draw, expiry of some outputs) gets
 * the whole new ZIP with 200 instead of a splice of two different files.
 *
 * The ETag hashes the layout itself — every byte this code writes (headers, manifests, central directory) and the
 * key and length of every object slice — so no change of code or data that moves a byte can keep it.
 */
export async function zipEtag(layout: ZipLayout): Promise<string> {
  const enc = new TextEncoder();
  // Each part tagged with its kind and length, so no written bytes can read as an object slice or the reverse.
  const pieces = layout.parts.flatMap((p) =>
    "bytes" in p ? [enc.encode(`b${p.length}:`), p.bytes] : [enc.encode(`o${p.length}:${p.offset}:${p.key.length}:${p.key}`)],
  );
  const all = new Uint8Array(pieces.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of pieces) {
    all.set(b, at);
    at += b.length;
  }
  return `"zip-${toHex(await crypto.subtle.digest("SHA-256", all)).slice(0, 32)}"`;
}

/**
 * 200 with the whole ZIP, 206 with the range when `Range` is satisfiable and `If-Range` (if sent) names this ZIP, or
 * 416 for a range past its end — always with the ETag.
 */
export async function answerZip(
  bucket: R2Bucket,
  job: { id: string; effects: string },
  entries: DigestedEntry[],
  req: { range?: string | null; ifRange?: string | null },
): Promise<Response> {
  const layout = layoutZip(zipFiles(job, entries));
  const etag = await zipEtag(layout);
  const headers = new Headers({
    "content-type": "application/zip",
    "content-disposition": `attachment; filename="video-refresher-${job.id}.zip"`,
    "cache-control": "private, no-store",
    etag,
    "accept-ranges": "bytes",
  });
  // If-Range with a date (or another ETag) cannot prove the client holds this ZIP: send it whole.
  const fresh = !req.ifRange || req.ifRange.trim() === etag;
  const range = fresh ? parseRange(req.range, layout.length) : null;
  if (range === "unsatisfiable") return rangeNotSatisfiable(layout.length, headers);
  const { start, end } = range ?? { start: 0, end: layout.length - 1 };
  const size = end - start + 1;
  // workerd sends a plain stream chunked and drops a hand-set Content-Length; a FixedLengthStream makes it send the
  // announced length (and fails the response if the bytes ever disagree with it).
  const sized = new FixedLengthStream(size);
  streamZipRange(bucket, layout, start, end)
    .pipeTo(sized.writable)
    .catch((err: unknown) => console.error("zip stream aborted", err));
  headers.set("content-length", String(size));
  if (!range) return new Response(sized.readable, { status: 200, headers });
  headers.set("content-range", `bytes ${start}-${end}/${layout.length}`);
  return new Response(sized.readable, { status: 206, headers });
}
