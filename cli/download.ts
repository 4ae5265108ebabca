import { createWriteStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, normalize, resolve, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import yauzl from "yauzl";
import { call, unreachable, type Api } from "./client";
import { CliError, EXIT } from "./errors";
import type { Progress } from "./progress";
import { DamagedZip, verifyJobZip } from "./verify-zip";

export interface DownloadResult {
  jobId: string;
  file: string;
  bytes: number;
  /** With --unzip: the extracted files (the ZIP itself is removed). */
  extracted?: string[];
  /** Bytes an interrupted earlier run had already saved and this one kept (0 when it started from the beginning). */
  resumedFrom: number;
  /** A .part file from an earlier run was thrown away: the job changed since (its ZIP is no longer the same). */
  restarted: boolean;
}

/** What an interrupted download leaves next to its .part: which ZIP the bytes belong to. */
interface PartState {
  etag: string;
}

async function readPartState(file: string): Promise<PartState | null> {
  try {
    const state = JSON.parse(await readFile(file, "utf8")) as Partial<PartState>;
    return typeof state.etag === "string" && state.etag ? { etag: state.etag } : null;
  } catch {
    return null;
  }
}

/**
 * GET /api/jobs/:id/download into DIR/video-refresher-<id>.zip. Bytes go to a .part file (renamed only when
 * complete) and the ZIP's ETag to a .part.json beside it; a later run asks for the rest only (`Range` from the
 * .part's size, `If-Range` with that ETag), so an interrupted download continues where it stopped. If the job
 * changed since (the server answers 200, not 206), the .part is replaced by the new ZIP.
 */
export async function downloadJob(api: Api, url: string, id: string, dir: string, progress: Progress, unzip: boolean): Promise<DownloadResult> {
  const outDir = resolve(dir);
  await mkdir(outDir, { recursive: true });
  const file = join(outDir, `video-refresher-${id}.zip`);
  const part = `${file}.part`;
  const stateFile = `${part}.json`;
  const held = await stat(part).then((st) => st.size, () => -1);
  const state = held > 0 ? await readPartState(stateFile) : null;
  const headers: Record<string, string> = state ? { range: `bytes=${held}-`, "if-range": state.etag } : {};
  let res: Awaited<ReturnType<typeof requestZip>>;
  try {
    res = await requestZip(api, url, id, headers);
  } catch (err) {
    // 416: the .part already holds the whole ZIP (the earlier run was stopped between the last byte and the rename).
    if (!(state && err instanceof CliError && err.status === 416)) throw err;
    const check = progress.bar(`check ${id}.zip`, held);
    await keepVerified(part, file, stateFile, true, (n) => check.update(n));
    check.update(held);
    return finish({ jobId: id, file, bytes: held, resumedFrom: held, restarted: false }, outDir, unzip);
  }
  const { body, response } = res;
  const resumed = response.status === 206;
  // A 206 must continue exactly where the .part ends: appending a range that starts elsewhere (a proxy or server
  // that ignored part of the Range) would leave a ZIP with bytes missing or doubled, unzipped without complaint.
  const rangeStart = Number(/^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "")?.[1] ?? NaN);
  if (resumed && rangeStart !== held) {
    await (body as ReadableStream).cancel().catch(() => {});
    await rm(part, { force: true });
    await rm(stateFile, { force: true });
    throw new CliError(`the server resumed at byte ${rangeStart}, not ${held}; the partial file was discarded: run the command again`, EXIT.network, "network");
  }
  const restarted = held >= 0 && !resumed;
  if (restarted) progress.log(`${part}: ${held > 0 ? "the job changed since the interrupted download" : "empty"}; starting over`);
  if (resumed) progress.log(`${part}: resuming after ${held} bytes`);
  const etag = response.headers.get("etag");
  if (etag) await writeFile(stateFile, JSON.stringify({ etag } satisfies PartState), { mode: 0o600 });
  const startAt = resumed ? held : 0;
  const total = resumed ? Number(/\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1] ?? 0) : Number(response.headers.get("content-length") ?? 0);
  const bar = progress.bar(`download ${id}.zip`, total);
  let bytes = startAt;
  bar.update(bytes);
  // Each chunk is written before the next is read: when the connection drops, every byte received is on disk for
  // the re-run to continue after (a stream pipeline would throw away what it still buffered).
  const out = await open(part, resumed ? "a" : "w", 0o600);
  try {
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      await out.write(chunk);
      bytes += chunk.length;
      bar.update(bytes);
    }
  } catch (err) {
    throw unreachable(url, err);
  } finally {
    await out.close();
  }
  if (total > 0 && bytes !== total) {
    throw new CliError(`download cut short: ${bytes} of ${total} bytes (kept ${part}; run the command again to continue)`, EXIT.network, "network");
  }
  // Checking hashes every byte once more (seconds per gigabyte): a bar, so a long check does not look like a hang.
  // It counts the entries' bytes, a little less than the file (headers, directory): a passed check ends it at 100 %.
  const check = progress.bar(`check ${id}.zip`, bytes);
  await keepVerified(part, file, stateFile, startAt > 0, (n) => check.update(n));
  check.update(bytes);
  return finish({ jobId: id, file, bytes, resumedFrom: startAt, restarted }, outDir, unzip);
}

/**
 * The .part becomes the ZIP only when every entry matches its checksum and manifest.json (cli/verify-zip.ts).
 * A damaged one that was glued from two requests is removed with its state: resuming would keep the bad bytes,
 * and the next run fetches it whole (exit 4). One fetched whole in one answer came damaged from the server (or its
 * storage): fetching it again would only repeat that, so it is kept aside as `<name>.damaged.zip` for a report
 * (exit 1). A disk error while checking is neither, and leaves everything in place.
 */
async function keepVerified(part: string, file: string, stateFile: string, glued: boolean, onProgress: (bytesRead: number) => void): Promise<void> {
  try {
    await verifyJobZip(part, onProgress);
  } catch (err) {
    if (!(err instanceof DamagedZip)) throw err;
    await rm(stateFile, { force: true });
    if (glued) {
      await rm(part, { force: true });
      throw new CliError(`the downloaded ZIP is damaged (${err.message}); it was removed: run the command again`, EXIT.network, "damaged_download");
    }
    const aside = file.replace(/\.zip$/, ".damaged.zip");
    await rename(part, aside);
    throw new CliError(`the server sent a damaged ZIP (${err.message}); kept as ${basename(aside)} — please report it`, EXIT.failed, "damaged_download");
  }
  await rename(part, file);
  await rm(stateFile, { force: true });
}

async function requestZip(api: Api, url: string, id: string, headers: Record<string, string>) {
  const { data: body, response } = await call(url, api.GET("/api/jobs/{id}/download", { params: { path: { id } }, headers, parseAs: "stream" }));
  if (!body) throw new CliError("the server sent no ZIP", EXIT.failed, "empty_response");
  return { body, response };
}

async function finish(result: DownloadResult, outDir: string, unzip: boolean): Promise<DownloadResult> {
  if (!unzip) return result;
  const extracted = await extractZip(result.file, outDir);
  await rm(result.file, { force: true });
  return { ...result, extracted };
}

/** Extracts every entry under `dir`, refusing names that would land outside it. */
export async function extractZip(zipFile: string, dir: string): Promise<string[]> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) => yauzl.open(zipFile, { lazyEntries: true, autoClose: true }, (e, z) => (e ? rej(e) : res(z))));
  const written: string[] = [];
  try {
    await new Promise<void>((res, rej) => {
      zip.on("error", rej);
      zip.on("end", () => res());
      zip.on("entry", (entry: yauzl.Entry) => {
        const name = normalize(entry.fileName);
        if (name.startsWith("..") || name.startsWith(sep) || name.includes(`${sep}..${sep}`)) {
          rej(new CliError(`refusing ZIP entry outside the target directory: ${entry.fileName}`));
          return;
        }
        const target = join(dir, name);
        if (entry.fileName.endsWith("/")) {
          mkdir(target, { recursive: true }).then(() => zip.readEntry(), rej);
          return;
        }
        zip.openReadStream(entry, (err, stream) => {
          if (err) return rej(err);
          mkdir(dirname(target), { recursive: true })
            .then(() => pipeline(stream, createWriteStream(target)))
            .then(() => {
              written.push(target);
              zip.readEntry();
            }, rej);
        });
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return written;
}
