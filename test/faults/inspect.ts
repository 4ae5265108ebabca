// Read-only views of the local stack that fault drills and benchmarks share (no vitest here: bench/ imports it).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import Database from "libsql";

/**
 * Live processes that look like FFmpeg (real binary or a stand-in named ffmpeg) and whose arguments point into
 * one of `roots` (the runner's WORK_DIR lives there), so FFmpeg of other tests on this machine is never counted.
 * `encodesOnly` leaves out the short probe and thumbnail calls.
 */
export async function ffmpegPidsUnder(roots: string[], opts: { encodesOnly?: boolean } = {}): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = (await readFile(`/proc/${name}/cmdline`, "utf8")).split("\0").filter(Boolean);
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      if (stat.split(") ")[1]?.[0] === "Z") continue; // a zombie is dead, only not reaped yet
      const isFfmpeg = argv.slice(0, 2).some((a) => /(^|\/)ffmpeg$/.test(a));
      // Encodes report progress (`-progress pipe:1`); probes and thumbnails do not.
      if (opts.encodesOnly && !argv.includes("-progress")) continue;
      if (isFfmpeg && argv.some((a) => roots.some((r) => a.startsWith(r)))) pids.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

/**
 * Objects in the local R2 bucket. Miniflare keeps each bucket's index in a SQLite file (`_mf_objects`); reading it
 * is the only way to see *every* object (the edge lists only `outputs/<job>/`), which "no object that no row
 * records" needs.
 */
export async function bucketObjects(persistTo: string): Promise<{ key: string; size: number }[]> {
  const dir = join(persistTo, "v3", "r2", "miniflare-R2BucketObject");
  const objects: { key: string; size: number }[] = [];
  for (const f of await readdir(dir)) {
    if (!f.endsWith(".sqlite")) continue;
    const conn = new Database(join(dir, f), { readonly: true });
    try {
      const tables = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_mf_objects'").all();
      if (tables.length === 0) continue;
      for (const row of conn.prepare("SELECT key, size FROM _mf_objects").all() as { key: string; size: number }[]) {
        objects.push({ key: row.key, size: Number(row.size) });
      }
    } finally {
      conn.close();
    }
  }
  return objects.sort((a, b) => a.key.localeCompare(b.key));
}
