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

/**
 * The 416 answer: the project's JSON error body plus the unsatisfied Content-Range with the size (RFC 9110). Of
 * the file's headers only ETag and Accept-Ranges carry over: its content type, Content-Disposition and caching
 * would label this error as the file, and a browser may save it as an empty download under the file's name.
 */
export function rangeNotSatisfiable(size: number, keep: Headers = new Headers()): Response {
  const headers = new Headers();
  for (const name of ["etag", "accept-ranges"]) {
    const value = keep.get(name);
    if (value !== null) headers.set(name, value);
  }
  headers.set("content-type", "application/json");
  headers.set("content-range", `bytes */${size}`);
  const body = {
    error: {
      code: "range_not_satisfiable",
      message: `The requested range lies outside the file, which is ${size} bytes long`,
    },
  };
  return new Response(JSON.stringify(body), { status: 416, headers });
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
  if (range === "unsatisfiable") return rangeNotSatisfiable(opts.size, headers);
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
