import { NotFoundError } from "../../db/errors";

/** A byte range within an object of known size: inclusive start and end. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a single-range `Range: bytes=…` header against an object size. Returns null when there is no usable
 * Range (serve the whole object), "unsatisfiable" for a range outside the object (416). Multi-range requests are
 * answered with the whole object, which RFC 9110 allows.
 */
export function parseRange(header: string | undefined | null, size: number): ByteRange | null | "unsatisfiable" {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

/** Streams an R2 object, honouring Range for seeking in `<video>` previews. */
export async function serveObject(
  bucket: R2Bucket,
  key: string,
  opts: { size: number; contentType: string; rangeHeader?: string | null; filename?: string },
): Promise<Response> {
  const range = parseRange(opts.rangeHeader, opts.size);
  const headers = new Headers({
    "content-type": opts.contentType,
    "accept-ranges": "bytes",
    "cache-control": "private, max-age=3600",
  });
  if (opts.filename) headers.set("content-disposition", `inline; filename="${opts.filename}"`);
  if (range === "unsatisfiable") {
    headers.set("content-range", `bytes */${opts.size}`);
    return new Response(null, { status: 416, headers });
  }
  const obj = await bucket.get(key, range ? { range: { offset: range.start, length: range.end - range.start + 1 } } : {});
  if (!obj) throw new NotFoundError("The file is gone");
  if (range) {
    headers.set("content-range", `bytes ${range.start}-${range.end}/${opts.size}`);
    headers.set("content-length", String(range.end - range.start + 1));
    return new Response(obj.body, { status: 206, headers });
  }
  headers.set("content-length", String(opts.size));
  return new Response(obj.body, { status: 200, headers });
}
