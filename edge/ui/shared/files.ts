/** What the upload page accepts; the server sniffs again (415) — this check just saves a pointless upload. */
export const ACCEPTED_EXTENSIONS = ["mp4", "mov", "m4v", "webm", "mkv"] as const;
export const ACCEPT_ATTRIBUTE =
  ".mp4,.mov,.m4v,.webm,.mkv,video/mp4,video/quicktime,video/x-m4v,video/webm,video/x-matroska";
export const MAX_FILES = 10;
export const MIN_VARIATIONS = 1;
export const MAX_VARIATIONS = 20;

/**
 * Above this size a file goes through the multipart upload API (parts retried one by one) instead of one
 * request: Workers cap a request body at 100 MB, and a 2 GB single request would restart from zero on any blip.
 */
export const MULTIPART_THRESHOLD_BYTES = 64 * 1024 * 1024;

export type SniffResult = "iso-bmff" | "ebml" | null;

/** MP4/MOV/M4V start with a box whose type at offset 4 is `ftyp`; WebM/MKV start with the EBML magic. */
export function sniffVideo(head: Uint8Array): SniffResult {
  if (head.length >= 8 && head[4] === 0x66 && head[5] === 0x74 && head[6] === 0x79 && head[7] === 0x70) return "iso-bmff";
  if (head.length >= 4 && head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return "ebml";
  return null;
}

export function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
}

export const UNSUPPORTED_HINT = "Use MP4, MOV, M4V, WebM or MKV videos.";

/** Returns a user-facing reason a file cannot be uploaded, or null when it looks like a video we take. */
export function rejectReason(
  file: { name: string; size: number },
  head: Uint8Array,
  maxBytes: number,
): string | null {
  const ext = extensionOf(file.name);
  if (!(ACCEPTED_EXTENSIONS as readonly string[]).includes(ext)) {
    return `“${file.name}” is not a supported video. ${UNSUPPORTED_HINT}`;
  }
  if (file.size === 0) return `“${file.name}” is empty.`;
  if (file.size > maxBytes) return `“${file.name}” is too large (the limit is ${Math.floor(maxBytes / 1024 ** 2)} MB).`;
  if (!sniffVideo(head)) return `“${file.name}” does not look like a video file. ${UNSUPPORTED_HINT}`;
  return null;
}

export function useMultipart(sizes: readonly number[]): boolean {
  const total = sizes.reduce((a, b) => a + b, 0);
  return sizes.some((s) => s > MULTIPART_THRESHOLD_BYTES) || total > MULTIPART_THRESHOLD_BYTES;
}

/**
 * Splits the bytes one multipart/form-data request has sent so far into per-file progress. The body carries the
 * files in order, so the cumulative byte position says which file is on the wire; the small multipart overhead
 * is spread proportionally (scale = sizes total / body total).
 */
export function perFileProgress(sizes: readonly number[], loaded: number, total: number): number[] {
  const sum = sizes.reduce((a, b) => a + b, 0);
  const sent = total > 0 ? (loaded / total) * sum : 0;
  let offset = 0;
  return sizes.map((size) => {
    const done = Math.max(0, Math.min(size, sent - offset));
    offset += size;
    return size === 0 ? 100 : (done / size) * 100;
  });
}
