import { downloadZip } from "client-zip";

/**
 * How this code lays a ZIP out: the ZIP writer's version and this file's own layout. Part of the download's ETag
 * (zip-resume.ts), so a resume across a deploy that changed the bytes gets the new ZIP whole instead of a splice.
 * Bump the number on any change to the container (entry fields, order, ZIP64); test/edge/lib/zip.test.ts fails when
 * the writer's version here is not the installed one.
 */
export const ZIP_LAYOUT = "client-zip@2.5.1;1";
import { parseStoredEffects } from "../../db/effects";
import type { DownloadEntry } from "../../db/queries/jobs";

/**
 * Windows device names. Windows matches the part before the first dot, trailing spaces ignored, so `NUL.tar` or
 * `con .x` open the device as surely as `nul` (and COM/LPT take superscript digits too): such a folder or file
 * cannot be created when the ZIP is extracted.
 */
const RESERVED = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³]) *(\..*)?$/i;

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

export type NamedEntry<E extends NamingFields = DownloadEntry> = E & { name: string };

type NamingFields = Pick<DownloadEntry, "sourceId" | "sourceName" | "sourcePosition" | "position">;

/**
 * ZIP entry names `<base>/<base>_var<NN>.mp4`: one folder per source; a base name already used by an earlier
 * source (case-insensitively, as on Windows/macOS file systems) becomes `<base>-2`, `<base>-3`, …
 */
export function nameEntries<E extends NamingFields>(entries: E[]): NamedEntry<E>[] {
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

const HASH_PLACEHOLDER = "0".repeat(64);
const CSV_COLUMNS = ["file", "source", "variation", "seed", "duration_ms", "bytes", "sha256", "ssim", "psnr", "distinct", "params"];

function parseParams(text: string | null): Record<string, unknown> | null {
  if (!text) return null;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** The output's duration: the source's probed duration through the recorded speed change. */
function durationOf(e: DownloadEntry, params: Record<string, unknown> | null): number | null {
  if (e.sourceDurationMs === null) return null;
  const speed = typeof params?.speed === "number" && params.speed > 0 ? params.speed : 1;
  return Math.round(e.sourceDurationMs / speed);
}

/** What a spreadsheet runs as a formula when a cell starts with it (OWASP "CSV injection"). */
const FORMULA_START = /^[=+\-@\t\r]/;
/** Text that a spreadsheet reads as a number anyway: "-0.5" is data, and a quote prefix would turn it into text. */
const PLAIN_NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;

function csvCell(v: unknown): string {
  let text = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  // Only text can carry a formula: file and source names come from the uploader, while numbers and the params
  // object (its JSON starts with "{") cannot. The "'" makes spreadsheets show the cell as text; manifest.json keeps
  // the name as it is.
  if (typeof v === "string" && FORMULA_START.test(text) && !PLAIN_NUMBER.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * manifest.json and manifest.csv for these entries with the given sha256 per entry (hex). Every field but the
 * hashes is known before the first byte is streamed and a hash is always 64 hex characters, so the manifests built
 * with placeholder hashes have exactly the size of the final ones: the ZIP's length is announced up front.
 */
export function buildManifests(job: { id: string; effects: string }, entries: NamedEntry[], sha256: readonly string[]) {
  const rows = entries.map((e, i) => {
    const params = parseParams(e.params);
    return {
      file: e.name,
      source: e.sourceName,
      variation: e.position,
      seed: e.seed,
      durationMs: durationOf(e, params),
      bytes: e.size,
      sha256: sha256[i] ?? HASH_PLACEHOLDER,
      // The runner's figures (null when not measured); known before streaming, so the size stays exact.
      ssim: e.ssim,
      psnr: e.psnr,
      distinct: e.distinct,
      params,
    };
  });
  const json = JSON.stringify({ job: job.id, effects: parseStoredEffects(job.effects), entries: rows }, null, 2) + "\n";
  const csv = [
    CSV_COLUMNS.join(","),
    ...rows.map((r) =>
      [r.file, r.source, r.variation, r.seed, r.durationMs, r.bytes, r.sha256, r.ssim, r.psnr, r.distinct, r.params].map(csvCell).join(","),
    ),
  ].join("\r\n") + "\r\n";
  const enc = new TextEncoder();
  return [
    { name: "manifest.json", bytes: enc.encode(json) },
    { name: "manifest.csv", bytes: enc.encode(csv) },
  ];
}

/** Passes a stream through unchanged while hashing it (SHA-256, streaming: memory stays bounded). */
function hashing(body: ReadableStream<Uint8Array>, done: (hex: string) => void): ReadableStream<Uint8Array> {
  const digest = new crypto.DigestStream("SHA-256");
  const writer = digest.getWriter();
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      async transform(chunk, controller) {
        await writer.write(chunk);
        controller.enqueue(chunk);
      },
      // Runs before the reader sees the end, so the hash is known when the ZIP writer asks for the next entry.
      async flush() {
        await writer.close();
        done([...new Uint8Array(await digest.digest)].map((b) => b.toString(16).padStart(2, "0")).join(""));
      },
    }),
  );
}

/**
 * Streams a STORE (uncompressed: MP4 does not compress) ZIP of the outputs straight from R2, one object at a time,
 * hashing each as it passes, then manifest.json and manifest.csv last (they carry those hashes). The
 * Content-Length is predicted exactly from names and sizes before the first byte is sent.
 */
export function zipResponse(
  bucket: R2Bucket,
  entries: NamedEntry[],
  filename: string,
  job: { id: string; effects: string },
): Response {
  const lastModified = new Date(Math.max(0, ...entries.map((e) => e.finishedAt ?? 0)));
  const placeholders = buildManifests(job, entries, []);
  async function* files() {
    const hashes: string[] = [];
    for (const [i, e] of entries.entries()) {
      const obj = await bucket.get(e.key);
      // A missing or resized object would break the announced length; abort the stream loudly instead.
      if (!obj) throw new Error(`output object ${e.key} is missing`);
      if (obj.size !== e.size) throw new Error(`output object ${e.key} is ${obj.size} bytes, recorded ${e.size}`);
      const input = hashing(obj.body, (hex) => (hashes[i] = hex));
      yield { name: e.name, size: e.size, lastModified: new Date(e.finishedAt ?? 0), input };
    }
    if (entries.some((_, i) => hashes[i] === undefined)) throw new Error("an entry was not hashed");
    const manifests = buildManifests(job, entries, hashes);
    for (const [i, m] of manifests.entries()) {
      if (m.bytes.length !== placeholders[i]!.bytes.length) throw new Error(`${m.name} changed size`);
      yield { name: m.name, size: m.bytes.length, lastModified, input: m.bytes };
    }
  }
  const zipped = downloadZip(files(), {
    metadata: [
      ...entries.map((e) => ({ name: e.name, size: e.size })),
      ...placeholders.map((m) => ({ name: m.name, size: m.bytes.length })),
    ],
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
