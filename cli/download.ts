import { createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join, normalize, resolve, sep } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import yauzl from "yauzl";
import { call, unreachable, type Api } from "./client";
import { CliError, EXIT } from "./errors";
import type { Progress } from "./progress";

export interface DownloadResult {
  jobId: string;
  file: string;
  bytes: number;
  /** With --unzip: the extracted files (the ZIP itself is removed). */
  extracted?: string[];
  /** A .part file from an interrupted earlier run was thrown away (the ZIP route has no Range support). */
  restarted: boolean;
}

/**
 * GET /api/jobs/:id/download into DIR/video-refresher-<id>.zip. The ZIP is streamed by the edge without Range
 * support, so an interrupted download cannot resume: bytes go to a .part file that is renamed only when complete,
 * and a later run discards a leftover .part and starts over.
 */
export async function downloadJob(api: Api, url: string, id: string, dir: string, progress: Progress, unzip: boolean): Promise<DownloadResult> {
  const outDir = resolve(dir);
  await mkdir(outDir, { recursive: true });
  const file = join(outDir, `video-refresher-${id}.zip`);
  const part = `${file}.part`;
  const restarted = await stat(part).then(() => true, () => false);
  if (restarted) {
    progress.log(`${part}: left by an interrupted download; the ZIP route cannot resume (no Range), starting over`);
    await rm(part, { force: true });
  }
  const { data: body, response } = await call(url, api.GET("/api/jobs/{id}/download", { params: { path: { id } }, parseAs: "stream" }));
  if (!body) throw new CliError("the server sent no ZIP", EXIT.failed, "empty_response");
  const total = Number(response.headers.get("content-length") ?? 0);
  const bar = progress.bar(`download ${id}.zip`, total);
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      bar.update(bytes);
      done(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>), count, createWriteStream(part));
  } catch (err) {
    throw unreachable(url, err);
  }
  if (total > 0 && bytes !== total) {
    throw new CliError(`download cut short: ${bytes} of ${total} bytes (kept ${part}; run the command again)`, EXIT.network, "network");
  }
  await rename(part, file);
  if (!unzip) return { jobId: id, file, bytes, restarted };
  const extracted = await extractZip(file, outDir);
  await rm(file, { force: true });
  return { jobId: id, file, bytes, extracted, restarted };
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
