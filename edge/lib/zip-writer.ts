/**
 * A STORE ZIP (MP4 does not compress) laid out before its first byte is read: every entry's size and CRC-32 are
 * known up front (the runner records them with each output), so the archive is a fixed list of parts — headers
 * this code writes, and slices of R2 objects — and any byte range of it is served by reading only the objects the
 * range covers. No data descriptors: the CRC is in the local header, which is what lets a range start anywhere.
 * ZIP64 (APPNOTE 4.5.3) for any size, offset or count that does not fit its 32/16-bit field.
 */

export interface ZipFile {
  /** UTF-8, forward slashes. */
  name: string;
  size: number;
  crc32: number;
  modified: Date;
  body: { key: string } | { bytes: Uint8Array };
}

/** A piece of the archive at byte `at`: bytes written here, or `length` bytes of an R2 object from `offset`. */
type Piece = { length: number; bytes: Uint8Array } | { length: number; key: string; offset: number; objectSize: number };
export type ZipPart = Piece & { at: number };

export interface ZipLayout {
  length: number;
  parts: ZipPart[];
}

const U32 = 0xffffffff;
const U16 = 0xffff;
const UTF8_NAMES = 0x0800;
/** Made by: Unix (3) so the external attributes below are read as a mode; spec version 4.5 (ZIP64). */
const MADE_BY = (3 << 8) | 45;
/** A regular file, rw-r--r--. */
const EXTERNAL_ATTRS = (0o100644 << 16) >>> 0;

/** MS-DOS date and time (2 s resolution, 1980–2107), in UTC: Workers have no local time zone. */
function dosDateTime(d: Date): { date: number; time: number } {
  const t = Number.isNaN(d.getTime()) ? 0 : d.getTime();
  const c = new Date(Math.min(Math.max(t, Date.UTC(1980, 0, 1)), Date.UTC(2107, 11, 31, 23, 59, 58)));
  return {
    date: ((c.getUTCFullYear() - 1980) << 9) | ((c.getUTCMonth() + 1) << 5) | c.getUTCDate(),
    time: (c.getUTCHours() << 11) | (c.getUTCMinutes() << 5) | (c.getUTCSeconds() >> 1),
  };
}

class Writer {
  private readonly view: DataView;
  readonly bytes: Uint8Array;
  private at = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
  u8(v: number) {
    this.view.setUint8(this.at, v);
    this.at += 1;
  }
  u16(v: number) {
    this.view.setUint16(this.at, v, true);
    this.at += 2;
  }
  u32(v: number) {
    this.view.setUint32(this.at, v >>> 0, true);
    this.at += 4;
  }
  u64(v: number) {
    this.view.setBigUint64(this.at, BigInt(v), true);
    this.at += 8;
  }
  raw(b: Uint8Array) {
    this.bytes.set(b, this.at);
    this.at += b.length;
  }
  done(): Uint8Array {
    if (this.at !== this.bytes.length) throw new Error(`zip record is ${this.at} bytes, sized ${this.bytes.length}`);
    return this.bytes;
  }
}

/** ZIP64 extended information (id 1): only the fields whose standard field overflowed, in this order. */
function zip64Extra(fields: number[]): Uint8Array {
  if (fields.length === 0) return new Uint8Array(0);
  const w = new Writer(4 + 8 * fields.length);
  w.u16(0x0001);
  w.u16(8 * fields.length);
  for (const f of fields) w.u64(f);
  return w.done();
}

/**
 * Extended timestamp (0x5455, "UT"): the modification time in Unix seconds, UTC. The DOS time fields have no zone,
 * so without it Info-ZIP, 7-Zip and macOS would show every file shifted by the user's offset from UTC.
 */
function mtimeExtra(d: Date): Uint8Array {
  const seconds = Math.floor(d.getTime() / 1000);
  // Readers take the field as signed 32-bit: outside 1980 (the DOS floor) … 2038 it is left out, not wrapped.
  if (!Number.isFinite(seconds) || seconds < Date.UTC(1980, 0, 1) / 1000 || seconds > 0x7fffffff) return new Uint8Array(0);
  const w = new Writer(9);
  w.u16(0x5455);
  w.u16(5);
  w.u8(1); // flags: the modification time is present
  w.u32(seconds);
  return w.done();
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * The layout of the archive of `files`, in that order. `forceZip64` writes every size and offset through ZIP64
 * records (tests use it to check those records with real unzip tools without 4 GiB of data).
 */
export function layoutZip(files: readonly ZipFile[], opts: { forceZip64?: boolean } = {}): ZipLayout {
  const force = opts.forceZip64 === true;
  const enc = new TextEncoder();
  const parts: ZipPart[] = [];
  const central: Uint8Array[] = [];
  let at = 0;
  const push = (part: Piece) => {
    parts.push({ ...part, at });
    at += part.length;
  };
  for (const f of files) {
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw new Error(`${f.name}: bad size ${f.size}`);
    if (!Number.isInteger(f.crc32) || f.crc32 < 0 || f.crc32 > U32) throw new Error(`${f.name}: bad CRC-32 ${f.crc32}`);
    if ("bytes" in f.body && f.body.bytes.length !== f.size) throw new Error(`${f.name}: ${f.body.bytes.length} bytes, sized ${f.size}`);
    const name = enc.encode(f.name);
    if (name.length > U16) throw new Error(`${f.name}: name too long`);
    const { date, time } = dosDateTime(f.modified);
    const offset = at;
    const bigSize = force || f.size >= U32;
    const bigOffset = force || offset >= U32;
    const version = bigSize || bigOffset ? 45 : 20;

    // Local header: with a ZIP64 size, both size fields say "see the extra field", which holds both.
    const mtime = mtimeExtra(f.modified);
    const localExtra = concat(zip64Extra(bigSize ? [f.size, f.size] : []), mtime);
    const local = new Writer(30 + name.length + localExtra.length);
    local.u32(0x04034b50);
    // From "version needed" to the extra field's length, the local and central headers hold the same fields.
    const shared = (w: Writer, extra: Uint8Array) => {
      w.u16(version);
      w.u16(UTF8_NAMES);
      w.u16(0); // STORE
      w.u16(time);
      w.u16(date);
      w.u32(f.crc32);
      w.u32(bigSize ? U32 : f.size);
      w.u32(bigSize ? U32 : f.size);
      w.u16(name.length);
      w.u16(extra.length);
    };
    shared(local, localExtra);
    local.raw(name);
    local.raw(localExtra);
    push({ length: local.bytes.length, bytes: local.done() });
    if (f.size > 0) {
      if ("bytes" in f.body) push({ length: f.size, bytes: f.body.bytes });
      else push({ length: f.size, key: f.body.key, offset: 0, objectSize: f.size });
    }

    const centralExtra = concat(zip64Extra([...(bigSize ? [f.size, f.size] : []), ...(bigOffset ? [offset] : [])]), mtime);
    const c = new Writer(46 + name.length + centralExtra.length);
    c.u32(0x02014b50);
    c.u16(MADE_BY);
    shared(c, centralExtra);
    c.u16(0); // comment
    c.u16(0); // disk
    c.u16(0); // internal attributes
    c.u32(EXTERNAL_ATTRS);
    c.u32(bigOffset ? U32 : offset);
    c.raw(name);
    c.raw(centralExtra);
    central.push(c.done());
  }

  const cdOffset = at;
  for (const c of central) push({ length: c.length, bytes: c });
  const cdSize = at - cdOffset;
  const count = files.length;
  if (force || count >= U16 || cdSize >= U32 || cdOffset >= U32) {
    const z64At = at;
    const z = new Writer(56 + 20);
    z.u32(0x06064b50);
    z.u64(44); // size of the rest of this record
    z.u16(MADE_BY);
    z.u16(45);
    z.u32(0);
    z.u32(0);
    z.u64(count);
    z.u64(count);
    z.u64(cdSize);
    z.u64(cdOffset);
    // ZIP64 end of central directory locator
    z.u32(0x07064b50);
    z.u32(0);
    z.u64(z64At);
    z.u32(1);
    push({ length: 76, bytes: z.done() });
  }
  const e = new Writer(22);
  e.u32(0x06054b50);
  e.u16(0);
  e.u16(0);
  e.u16(force ? U16 : Math.min(count, U16));
  e.u16(force ? U16 : Math.min(count, U16));
  e.u32(force || cdSize >= U32 ? U32 : cdSize);
  e.u32(force || cdOffset >= U32 ? U32 : cdOffset);
  e.u16(0);
  push({ length: 22, bytes: e.done() });
  return { length: at, parts };
}

/** Where an object part could not be read as recorded: the stream is aborted (the length was announced). */
export class ZipSourceError extends Error {}

/**
 * Bytes [start, end] (inclusive) of the archive. Reads only the objects the range overlaps, each with an R2 range
 * read of just the overlapping bytes; an object that is gone or resized aborts the stream loudly.
 */
/** The part of R2Bucket the archive is read through (a range read of one object). */
export interface ObjectRanges {
  get(key: string, opts: { range: { offset: number; length: number } }): Promise<{ size: number; body: ReadableStream<Uint8Array> } | null>;
}

export function streamZipRange(bucket: ObjectRanges, layout: ZipLayout, start: number, end: number): ReadableStream<Uint8Array> {
  const wanted = layout.parts.filter((p) => p.at + p.length > start && p.at <= end);
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (const p of wanted) {
      const from = Math.max(start - p.at, 0);
      const to = Math.min(end - p.at, p.length - 1);
      if ("bytes" in p) {
        yield p.bytes.subarray(from, to + 1);
        continue;
      }
      const length = to - from + 1;
      const obj = await bucket.get(p.key, { range: { offset: p.offset + from, length } });
      if (!obj) throw new ZipSourceError(`output object ${p.key} is missing`);
      if (obj.size !== p.objectSize) {
        await obj.body.cancel().catch(() => {});
        throw new ZipSourceError(`output object ${p.key} is ${obj.size} bytes, recorded ${p.objectSize}`);
      }
      let got = 0;
      for await (const chunk of obj.body as unknown as AsyncIterable<Uint8Array>) {
        got += chunk.length;
        yield chunk;
      }
      if (got !== length) throw new ZipSourceError(`output object ${p.key}: read ${got} bytes of ${length}`);
    }
  }
  const it = chunks();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await it.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await it.return(undefined);
    },
  });
}
