import { openRegularFile } from "./workdir";

/**
 * What an MP4 we wrote ourselves says about itself, read from its box structure: no second process. Verifying an
 * output used to cost an ffprobe run (~0.3 s CPU) per variation, competing with the encodes for the cores.
 */
export interface Mp4Summary {
  /** Movie duration from `mvhd` (the longest track), in ms. */
  durationMs: number;
  /** Sample-entry formats of the tracks by handler: e.g. { vide: ["avc1"], soun: ["mp4a"] }. */
  tracks: { handler: string; format: string; durationMs: number }[];
}

export class Mp4Error extends Error {}

interface Box {
  type: string;
  /** Offset of the payload within the buffer, and its end. */
  start: number;
  end: number;
}

function* boxes(buf: Buffer, start: number, end: number): Generator<Box> {
  let at = start;
  while (at + 8 <= end) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString("latin1", at + 4, at + 8);
    let header = 8;
    if (size === 1) {
      if (at + 16 > end) throw new Mp4Error(`truncated ${type} box`);
      size = Number(buf.readBigUInt64BE(at + 8));
      header = 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < header || at + size > end) throw new Mp4Error(`truncated ${type} box`);
    yield { type, start: at + header, end: at + size };
    at += size;
  }
}

function child(buf: Buffer, parent: Box, type: string): Box | undefined {
  for (const b of boxes(buf, parent.start, parent.end)) if (b.type === type) return b;
  return undefined;
}

/** (timescale, duration) of a full box laid out like mvhd/mdhd: version 1 has 64-bit times. */
function timing(buf: Buffer, box: Box): { timescale: number; duration: number } {
  const version = buf.readUInt8(box.start);
  if (version === 1) {
    return { timescale: buf.readUInt32BE(box.start + 20), duration: Number(buf.readBigUInt64BE(box.start + 24)) };
  }
  return { timescale: buf.readUInt32BE(box.start + 12), duration: buf.readUInt32BE(box.start + 16) };
}

const ms = (t: { timescale: number; duration: number }) => (t.timescale > 0 ? Math.round((t.duration / t.timescale) * 1000) : 0);

/** Parses a `moov` box's payload. */
export function parseMoov(buf: Buffer, moov: Box): Mp4Summary {
  const mvhd = child(buf, moov, "mvhd");
  if (!mvhd) throw new Mp4Error("no mvhd box");
  const tracks: Mp4Summary["tracks"] = [];
  for (const trak of boxes(buf, moov.start, moov.end)) {
    if (trak.type !== "trak") continue;
    const mdia = child(buf, trak, "mdia");
    const hdlr = mdia && child(buf, mdia, "hdlr");
    const mdhd = mdia && child(buf, mdia, "mdhd");
    const minf = mdia && child(buf, mdia, "minf");
    const stbl = minf && child(buf, minf, "stbl");
    const stsd = stbl && child(buf, stbl, "stsd");
    if (!hdlr || !mdhd || !stsd) throw new Mp4Error("incomplete track");
    // stsd: version/flags (4), entry count (4), then sample entries (size + format).
    const entry = [...boxes(buf, stsd.start + 8, stsd.end)][0];
    tracks.push({
      handler: buf.toString("latin1", hdlr.start + 8, hdlr.start + 12),
      format: entry?.type ?? "",
      durationMs: ms(timing(buf, mdhd)),
    });
  }
  return { durationMs: ms(timing(buf, mvhd)), tracks };
}

/**
 * Walks the file's top-level box headers (they must tile the file exactly: a file cut short anywhere fails) and
 * parses its `moov`. Only headers and the `moov` itself are read, so the cost does not grow with the media data.
 */
export async function readMp4(path: string, maxMoovBytes = 64 * 2 ** 20): Promise<Mp4Summary> {
  const file = await openRegularFile(path);
  try {
    const { size } = await file.stat();
    if (size === 0) throw new Mp4Error("empty file");
    const head = Buffer.alloc(16);
    let at = 0;
    let moovAt: { at: number; header: number; size: number } | null = null;
    while (at < size) {
      const { bytesRead } = await file.read(head, 0, 16, at);
      if (bytesRead < 8) throw new Mp4Error("trailing bytes after the last box");
      let boxSize = head.readUInt32BE(0);
      const type = head.toString("latin1", 4, 8);
      let header = 8;
      if (boxSize === 1) {
        if (bytesRead < 16) throw new Mp4Error(`truncated ${type} box`);
        boxSize = Number(head.readBigUInt64BE(8));
        header = 16;
      } else if (boxSize === 0) {
        boxSize = size - at;
      }
      if (at === 0 && type !== "ftyp") throw new Mp4Error("not an MP4 file (no ftyp box)");
      if (boxSize < header || at + boxSize > size) throw new Mp4Error(`truncated ${type} box`);
      if (type === "moov") moovAt = { at, header, size: boxSize };
      at += boxSize;
    }
    if (!moovAt) throw new Mp4Error("no moov box (the file was not finalised)");
    if (moovAt.size > maxMoovBytes) throw new Mp4Error("moov box too large");
    const moov = Buffer.alloc(moovAt.size);
    await file.read(moov, 0, moovAt.size, moovAt.at);
    return parseMoov(moov, { type: "moov", start: moovAt.header, end: moovAt.size });
  } finally {
    await file.close();
  }
}
