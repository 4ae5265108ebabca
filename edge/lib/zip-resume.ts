import { buildManifests, ZIP_LAYOUT, type NamedEntry } from "./zip";
import { parseRange, rangeNotSatisfiable } from "./range";

/**
 * Resumable ZIP downloads (Range + If-Range on GET /api/jobs/:id/download).
 *
 * The ZIP is generated on the fly, but it is deterministic: the same entries (attempt-scoped output keys, which
 * never change bytes once recorded), names, sizes, times and manifest fields give the same bytes. So the ETag is a
 * hash of exactly those inputs, and a range is served by generating the ZIP again and skipping to its start. A
 * client resuming with `If-Range: <etag>` after the job changed (more variations, a re-draw, expiry of some
 * outputs) gets the whole new ZIP with 200 instead of a splice of two different files.
 */
export async function zipEtag(job: { id: string; effects: string }, entries: NamedEntry[]): Promise<string> {
  // The manifests with placeholder hashes hold every field of every entry (name, seed, params, bytes, quality…).
  const manifests = buildManifests(job, entries, []);
  const text = JSON.stringify([ZIP_LAYOUT, entries.map((e) => [e.key, e.size, e.finishedAt ?? 0]), manifests.map((m) => [...m.bytes])]);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `"zip-${hex.slice(0, 32)}"`;
}

/** Bytes [start, end] (inclusive) of a stream. */
export function sliceStream(source: ReadableStream<Uint8Array>, start: number, end: number): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let pos = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (pos > end) {
          controller.close();
          // Read the rest and drop it rather than cancel: cancelling makes the ZIP writer's R2 and hashing
          // streams reject where nothing can catch it. Only a range that ends before the ZIP does pays for this.
          void (async () => {
            while (!(await reader.read()).done);
          })().catch(() => {});
          return;
        }
        const { done, value } = await reader.read();
        if (done) {
          controller.error(new Error(`the ZIP ended at byte ${pos}, before the range's end ${end}`));
          return;
        }
        const from = Math.max(start - pos, 0);
        const to = Math.min(end + 1 - pos, value.length);
        pos += value.length;
        if (to > from) {
          controller.enqueue(value.subarray(from, to));
          return;
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/**
 * Turns the full ZIP response into what the request asked for: 206 with the range when `Range` is satisfiable and
 * `If-Range` (if sent) names this ZIP, 416 for a range past its end, else the full 200 — always with the ETag.
 */
export function answerRange(full: Response, etag: string, req: { range?: string | null; ifRange?: string | null }): Response {
  const length = Number(full.headers.get("content-length"));
  const headers = new Headers(full.headers);
  headers.set("etag", etag);
  headers.set("accept-ranges", "bytes");
  // If-Range with a date (or another ETag) cannot prove the client holds this ZIP: send it whole.
  const fresh = !req.ifRange || req.ifRange.trim() === etag;
  const range = fresh ? parseRange(req.range, length) : null;
  if (range === null) return new Response(full.body, { status: 200, headers });
  if (range === "unsatisfiable") {
    // The ZIP already being generated is left unread, not cancelled: cancelling makes the ZIP writer's R2 and
    // hashing streams reject where nothing can catch it (see sliceStream). Unread, backpressure stalls it after the
    // first chunk, and it is dropped with the request.
    return rangeNotSatisfiable(length, headers);
  }
  const size = range.end - range.start + 1;
  // As for the full ZIP: workerd only announces a length for a FixedLengthStream body.
  const sized = new FixedLengthStream(size);
  sliceStream(full.body!, range.start, range.end)
    .pipeTo(sized.writable)
    .catch((err: unknown) => console.error("zip range stream aborted", err));
  headers.set("content-length", String(size));
  headers.set("content-range", `bytes ${range.start}-${range.end}/${length}`);
  return new Response(sized.readable, { status: 206, headers });
}
