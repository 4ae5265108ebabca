import { downloadZip } from "client-zip";
import type { DownloadEntry } from "../../db/queries/jobs";

const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/i;

/** A file-name-safe base name: no extension, path separators, control or Windows-reserved characters. */
export function sanitizeBaseName(filename: string): string {
  const base = filename.replace(/^.*[\\/]/, "").replace(/\.[^.]{1,8}$/, "");
  let clean = base
    .normalize("NFC")
    .replace(/[\u0000-\u001f\u007f<>:"/\\|?*]+/g, "_")
    .replace(/\s+/g, " ")
    .replace(/^[\s.]+|[\s.]+$/g, "");
  clean = [...clean].slice(0, 100).join("").trim();
  if (!clean) return "video";
  return RESERVED.test(clean) ? `_${clean}` : clean;
}

export interface NamedEntry extends DownloadEntry {
  name: string;
}

/**
 * ZIP entry names `<base>/<base>_var<NN>.mp4`: one folder per source; a base name already used by an earlier
 * source (case-insensitively, as on Windows/macOS file systems) becomes `<base>-2`, `<base>-3`, …
 */
export function nameEntries(entries: DownloadEntry[]): NamedEntry[] {
  const folders = new Map<string, string>();
  const used = new Set<string>();
  const ordered = [...entries].sort((a, b) => a.sourcePosition - b.sourcePosition || a.position - b.position);
  for (const e of ordered) {
    if (folders.has(e.sourceId)) continue;
    const base = sanitizeBaseName(e.sourceName);
    let folder = base;
    for (let n = 2; used.has(folder.toLowerCase()); n++) folder = `${base}-${n}`;
    used.add(folder.toLowerCase());
    folders.set(e.sourceId, folder);
  }
  return ordered.map((e) => {
    const folder = folders.get(e.sourceId)!;
    return { ...e, name: `${folder}/${folder}_var${String(e.position).padStart(2, "0")}.mp4` };
  });
}

/**
 * Streams a STORE (uncompressed: MP4 does not compress) ZIP of the outputs straight from R2, one object at a time.
 * The Content-Length is predicted exactly from names and sizes before the first byte is sent.
 */
export function zipResponse(bucket: R2Bucket, entries: NamedEntry[], filename: string): Response {
  async function* files() {
    for (const e of entries) {
      const obj = await bucket.get(e.key);
      // A missing or resized object would break the announced length; abort the stream loudly instead.
      if (!obj) throw new Error(`output object ${e.key} is missing`);
      if (obj.size !== e.size) throw new Error(`output object ${e.key} is ${obj.size} bytes, recorded ${e.size}`);
      yield { name: e.name, size: e.size, lastModified: new Date(e.finishedAt ?? 0), input: obj.body };
    }
  }
  const zipped = downloadZip(files(), {
    metadata: entries.map((e) => ({ name: e.name, size: e.size })),
    buffersAreUTF8: true,
  });
  const headers = new Headers({
    "content-type": "application/zip",
    "content-disposition": `attachment; filename="${filename}"`,
    "cache-control": "private, no-store",
  });
  const length = Number(zipped.headers.get("content-length"));
  // workerd sends a plain stream chunked and drops a hand-set Content-Length; a FixedLengthStream makes it send the
  // announced length (and fails the response if the bytes ever disagree with it).
  const sized = new FixedLengthStream(length);
  zipped.body!.pipeTo(sized.writable).catch((err: unknown) => console.error("zip stream aborted", err));
  headers.set("content-length", String(length));
  return new Response(sized.readable, { status: 200, headers });
}
