import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import yauzl from "yauzl";

/** What is wrong with a downloaded ZIP, for the user (entry names are theirs; no local paths). */
export class DamagedZip extends Error {}

/**
 * A reading error means damage unless it is this machine's own (an errno such as EACCES or EIO: yauzl's format
 * errors carry none) — a disk that cannot be read is not a reason to throw the download away.
 */
function damage(err: unknown, where: string): unknown {
  if (err instanceof DamagedZip || typeof (err as { code?: unknown } | null)?.code === "string") return err;
  return new DamagedZip(`${where}${err instanceof Error ? err.message : String(err)}`);
}

interface Read {
  crc: number;
  sha256: string;
  bytes: number;
}

function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, onBytes: (n: number) => void): Promise<Read & { text?: string }> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream: Readable) => {
      if (err) return reject(damage(err, `${entry.fileName}: `));
      const hash = createHash("sha256");
      const keep = entry.fileName === "manifest.json" ? ([] as Buffer[]) : null;
      let crc = 0;
      let bytes = 0;
      stream.on("data", (chunk: Buffer) => {
        hash.update(chunk);
        crc = crc32(chunk, crc);
        bytes += chunk.length;
        onBytes(chunk.length);
        keep?.push(chunk);
      });
      stream.on("error", (e) => reject(damage(e, `${entry.fileName}: `)));
      stream.on("end", () =>
        resolve({ crc: crc >>> 0, sha256: hash.digest("hex"), bytes, ...(keep ? { text: Buffer.concat(keep).toString("utf8") } : {}) }),
      );
    });
  });
}

/**
 * Checks every entry of a downloaded job ZIP against its CRC-32, and every video against the SHA-256 and size that
 * manifest.json records (the runner's digest of the file it uploaded). A resumed download is two requests glued
 * together; anything between them that changed a byte — a proxy that ignored part of a Range, a disk that lost a
 * write — is caught here instead of in the user's editor. Throws DamagedZip naming the first bad entry.
 * `onProgress` gets the entry bytes read so far (a job's ZIP is mostly its videos: gigabytes take a while to hash).
 */
export async function verifyJobZip(file: string, onProgress: (bytesRead: number) => void = () => {}): Promise<{ entries: number }> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
    yauzl.open(file, { lazyEntries: true, autoClose: false }, (e, z) => (e ? rej(damage(e, "not a readable ZIP: ")) : res(z))),
  );
  const read = new Map<string, Read>();
  let manifest: string | undefined;
  let bytesRead = 0;
  const onBytes = (n: number) => onProgress((bytesRead += n));
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on("error", (e: Error) => reject(damage(e, "not a readable ZIP: ")));
      zip.on("end", () => resolve());
      zip.on("entry", (entry: yauzl.Entry) => {
        readEntry(zip, entry, onBytes).then((r) => {
          if (r.crc !== entry.crc32 >>> 0) return reject(new DamagedZip(`${entry.fileName}: its bytes do not match the ZIP's checksum`));
          if (r.text !== undefined) manifest = r.text;
          read.set(entry.fileName, r);
          zip.readEntry();
        }, reject);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  if (manifest === undefined) throw new DamagedZip("manifest.json is missing");
  let listed: { file?: unknown; bytes?: unknown; sha256?: unknown }[];
  try {
    listed = (JSON.parse(manifest) as { entries: typeof listed }).entries;
    if (!Array.isArray(listed)) throw new Error("no entries");
  } catch {
    throw new DamagedZip("manifest.json is not the job's manifest");
  }
  const unlisted = new Set([...read.keys()].filter((name) => name !== "manifest.json" && name !== "manifest.csv"));
  for (const e of listed) {
    const got = typeof e.file === "string" ? read.get(e.file) : undefined;
    if (!got) throw new DamagedZip(`${String(e.file)} is listed in manifest.json but not in the ZIP`);
    if (got.bytes !== e.bytes || got.sha256 !== e.sha256) throw new DamagedZip(`${String(e.file)}: its bytes do not match the SHA-256 in manifest.json`);
    unlisted.delete(e.file as string);
  }
  const [stray] = unlisted;
  if (stray !== undefined) throw new DamagedZip(`${stray} is in the ZIP but not in manifest.json`);
  return { entries: read.size };
}
