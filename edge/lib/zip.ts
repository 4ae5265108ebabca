import { parseStoredEffects } from "../../db/effects";
import type { DownloadEntry } from "../../db/queries/jobs";
import { crc32 } from "./crc32";
import type { ZipFile } from "./zip-writer";

/**
 * Windows device names. Windows matches the part before the first dot, trailing spaces ignored, so `NUL.tar` or
 * `con .x` open the device as surely as `nul` (and COM/LPT take superscript digits too): such a folder or file
 * cannot be created when the ZIP is extracted.
 */
const RESERVED = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³]) *(\..*)?$/i;

const utf8 = new TextEncoder();
/** Leaves room in 255 bytes for a `-NN` folder suffix and `_varNNN.mp4`. */
const MAX_BASE_BYTES = 200;

/** A file-name-safe base name: no extension, path separators, control or Windows-reserved characters. */
export function sanitizeBaseName(filename: string): string {
  // A lone UTF-16 surrogate would be U+FFFD in the entry's UTF-8 name but itself in manifest.json: make it U+FFFD.
  const base = filename.replace(/\p{Cs}/gu, "\uFFFD").replace(/^.*[\\/]/, "").replace(/\.[^.]{1,8}$/, "");
  let clean = base
    .normalize("NFC")
    .replace(/[\u0000-\u001f\u007f<>:"/\\|?*]+/g, "_")
    .replace(/\s+/g, " ")
    .replace(/^[\s.]+|[\s.]+$/g, "");
  // 100 characters, and at most MAX_BASE_BYTES of UTF-8: file systems count a name's bytes (255 on ext4, xfs,
  // btrfs), and 100 CJK characters (300 bytes) made entries that unzip and `download --unzip` could not extract.
  let bytes = 0;
  const kept: string[] = [];
  for (const ch of clean) {
    bytes += utf8.encode(ch).length;
    if (kept.length === 100 || bytes > MAX_BASE_BYTES) break;
    kept.push(ch);
  }
  clean = kept.join("").replace(/[\s.]+$/, "");
  if (!clean) return "video";
  return RESERVED.test(clean) ? `_${clean}` : clean;
}

export type NamedEntry<E extends NamingFields = DownloadEntry> = E & { name: string };

type NamingFields = Pick<DownloadEntry, "sourceId" | "sourceName" | "sourcePosition" | "position">;

/** The files at the root of every job ZIP, beside one folder per source. */
export const MANIFEST_FILES = ["manifest.json", "manifest.csv"] as const;

/**
 * ZIP entry names `<base>/<base>_var<NN>.mp4`: one folder per source; a base name already used by an earlier
 * source (case-insensitively, as on Windows/macOS file systems) becomes `<base>-2`, `<base>-3`, …
 */
export function nameEntries<E extends NamingFields>(entries: E[]): NamedEntry<E>[] {
  const folders = new Map<string, string>();
  // The root's own files too: a source named `manifest.json.mp4` made a folder `manifest.json/` beside the manifest
  // file, and extracting the ZIP failed (unzip: "Is a directory") or lost the manifest.
  const used = new Set<string>(MANIFEST_FILES.map((n) => n.toLowerCase()));
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

/** manifest.json and manifest.csv for these entries: what each file is, how it was made, and its recorded SHA-256. */
export function buildManifests(job: { id: string; effects: string }, entries: DigestedEntry[]) {
  const rows = entries.map((e) => {
    const params = parseParams(e.params);
    return {
      file: e.name,
      source: e.sourceName,
      variation: e.position,
      seed: e.seed,
      durationMs: durationOf(e, params),
      bytes: e.size,
      sha256: e.sha256,
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
    { name: MANIFEST_FILES[0], bytes: enc.encode(json) },
    { name: MANIFEST_FILES[1], bytes: enc.encode(csv) },
  ];
}

/** An entry whose output digest is known (recorded by the runner, or computed once: output-digests.ts). */
export type DigestedEntry = NamedEntry & { sha256: string; crc32: number };

/**
 * The archive's files: the outputs as recorded (bytes straight from R2), then manifest.json and manifest.csv, which
 * carry the recorded hashes — so every header and both manifests are known before a byte of any output is read.
 */
export function zipFiles(job: { id: string; effects: string }, entries: DigestedEntry[]): ZipFile[] {
  const lastModified = new Date(Math.max(0, ...entries.map((e) => e.finishedAt ?? 0)));
  const manifests = buildManifests(job, entries);
  return [
    ...entries.map((e) => ({ name: e.name, size: e.size, crc32: e.crc32, modified: new Date(e.finishedAt ?? 0), body: { key: e.key } })),
    ...manifests.map((m) => ({ name: m.name, size: m.bytes.length, crc32: crc32(m.bytes), modified: lastModified, body: { bytes: m.bytes } })),
  ];
}
