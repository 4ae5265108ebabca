/** Bytes needed to decide the container type. */
export const SNIFF_BYTES = 64;

/**
 * The container type from a file's first bytes, or null when it is not a supported video: ISO-BMFF (MP4, MOV,
 * M4V) has an `ftyp` box at offset 4; Matroska/WebM starts with the EBML magic 1A 45 DF A3. Names and declared
 * Content-Types are ignored: only the bytes decide.
 */
export function sniffVideoType(head: Uint8Array): string | null {
  if (head.length >= 12 && head[4] === 0x66 && head[5] === 0x74 && head[6] === 0x79 && head[7] === 0x70) {
    const brand = String.fromCharCode(...head.subarray(8, 12));
    if (brand === "qt  ") return "video/quicktime";
    if (brand.startsWith("M4V")) return "video/x-m4v";
    return "video/mp4";
  }
  if (head.length >= 4 && head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) {
    // The EBML header's DocType says webm or matroska; it sits within the first few dozen bytes.
    return new TextDecoder("latin1").decode(head).includes("webm") ? "video/webm" : "video/x-matroska";
  }
  return null;
}
