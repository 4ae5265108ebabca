import { ValidationError } from "../../db/errors";

/** Headers of one multipart/form-data part. */
export interface PartInfo {
  name: string;
  /** null for plain fields; "" when a file input was sent without a file name. */
  filename: string | null;
  contentType: string | null;
}

const CRLF = new Uint8Array([13, 10]);
const MAX_HEADER_BYTES = 16 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder();

function malformed(detail: string): ValidationError {
  return new ValidationError(`body: malformed multipart/form-data (${detail})`, "body");
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0]!;
  const last = haystack.length - needle.length;
  for (let i = haystack.indexOf(first, from); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** The boundary of a multipart/form-data Content-Type, or null when it is not one. */
export function multipartBoundary(contentType: string | null | undefined): string | null {
  if (!contentType || !/^multipart\/form-data\s*(;|$)/i.test(contentType)) return null;
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2])! : null;
}

function parseParams(value: string): Map<string, string> {
  const params = new Map<string, string>();
  const re = /;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    const raw = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!.trim();
    params.set(m[1]!.toLowerCase(), raw);
  }
  return params;
}

function parseHeaders(block: string): PartInfo {
  let disposition: string | null = null;
  let contentType: string | null = null;
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === "content-disposition") disposition = value;
    else if (key === "content-type") contentType = value;
  }
  if (!disposition || !/^form-data\b/i.test(disposition)) throw malformed("part without form-data disposition");
  const params = parseParams(disposition);
  const name = params.get("name");
  if (name === undefined) throw malformed("part without a name");
  let filename = params.get("filename") ?? null;
  const extended = params.get("filename*");
  if (extended) {
    // RFC 5987: charset'lang'percent-encoded; preferred over the plain filename when both are present.
    const m = /^([^']*)'[^']*'(.*)$/.exec(extended);
    try {
      filename = decodeURIComponent(m ? m[2]! : extended);
    } catch {
      /* keep the plain filename */
    }
  }
  return { name, filename, contentType };
}

/**
 * A streaming multipart/form-data reader: parts are visited in order and each part's body is read as a stream of
 * chunks, so a multi-gigabyte upload never sits in memory. At most one network chunk plus a delimiter's length is
 * held at a time.
 */
export class MultipartReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly delimiter: Uint8Array;
  // A virtual CRLF in front lets the first boundary match the same "\r\n--boundary" delimiter as all others.
  private buf: Uint8Array = CRLF;
  private exhausted = false;
  private state: "start" | "body" | "between" | "end" = "start";

  constructor(body: ReadableStream<Uint8Array>, boundary: string) {
    this.reader = body.getReader();
    this.delimiter = enc.encode(`\r\n--${boundary}`);
  }

  private async fill(): Promise<boolean> {
    if (this.exhausted) return false;
    const { value, done } = await this.reader.read();
    if (done) {
      this.exhausted = true;
      return false;
    }
    this.buf = concat(this.buf, value);
    return true;
  }

  private async need(bytes: number): Promise<void> {
    while (this.buf.length < bytes) if (!(await this.fill())) throw malformed("unexpected end of body");
  }

  /** Advances to the next part (skipping what is left of the current one); null after the closing boundary. */
  async next(): Promise<PartInfo | null> {
    if (this.state === "body") for await (const _ of this.body());
    if (this.state === "start") {
      // Skip the preamble up to the first delimiter.
      for (;;) {
        const at = indexOf(this.buf, this.delimiter);
        if (at !== -1) {
          this.buf = this.buf.subarray(at + this.delimiter.length);
          break;
        }
        this.buf = this.buf.subarray(Math.max(0, this.buf.length - this.delimiter.length + 1));
        if (!(await this.fill())) throw malformed("no boundary found");
      }
      this.state = "between";
    }
    if (this.state === "end") return null;

    // Right after a delimiter: "--" closes the body, otherwise optional whitespace and CRLF start a part.
    await this.need(2);
    if (this.buf[0] === 45 && this.buf[1] === 45) {
      this.state = "end";
      await this.reader.cancel().catch(() => {});
      return null;
    }
    for (;;) {
      const eol = indexOf(this.buf, CRLF);
      if (eol !== -1) {
        if (dec.decode(this.buf.subarray(0, eol)).trim() !== "") throw malformed("garbage after boundary");
        this.buf = this.buf.subarray(eol + 2);
        break;
      }
      if (this.buf.length > 256) throw malformed("garbage after boundary");
      if (!(await this.fill())) throw malformed("unexpected end of body");
    }

    const headerEnd = enc.encode("\r\n\r\n");
    for (;;) {
      // A part with no headers at all starts directly with the blank line.
      if (this.buf[0] === 13 && this.buf[1] === 10) {
        throw malformed("part without headers");
      }
      const at = indexOf(this.buf, headerEnd);
      if (at !== -1) {
        const info = parseHeaders(dec.decode(this.buf.subarray(0, at)));
        this.buf = this.buf.subarray(at + 4);
        this.state = "body";
        return info;
      }
      if (this.buf.length > MAX_HEADER_BYTES) throw malformed("part headers too large");
      if (!(await this.fill())) throw malformed("unexpected end of body");
    }
  }

  /** The current part's bytes as they arrive. */
  async *body(): AsyncGenerator<Uint8Array> {
    if (this.state !== "body") return;
    const keep = this.delimiter.length - 1;
    for (;;) {
      const at = indexOf(this.buf, this.delimiter);
      if (at !== -1) {
        const chunk = this.buf.subarray(0, at);
        this.buf = this.buf.subarray(at + this.delimiter.length);
        this.state = "between";
        if (chunk.length) yield chunk;
        return;
      }
      // Everything except a tail that could be the start of a delimiter split across chunks is part data.
      if (this.buf.length > keep) {
        const chunk = this.buf.subarray(0, this.buf.length - keep);
        this.buf = this.buf.subarray(this.buf.length - keep);
        yield chunk;
      }
      if (!(await this.fill())) throw malformed("unexpected end of body");
    }
  }

  /** Reads the current part as UTF-8 text, refusing more than `maxBytes`. */
  async text(field: string, maxBytes: number): Promise<string> {
    let out: Uint8Array = new Uint8Array(0);
    for await (const chunk of this.body()) {
      out = concat(out, chunk);
      if (out.length > maxBytes) throw new ValidationError(`${field}: value too long`, field);
    }
    return dec.decode(out);
  }

  /** Stops reading the request body (after an error, so the client is not kept uploading into the void). */
  async cancel(): Promise<void> {
    this.state = "end";
    await this.reader.cancel().catch(() => {});
  }
}
