import { statfs } from "node:fs/promises";
import type { Logger } from "./log";

/** A runner whose disk is (nearly) full claims nothing: every claim would fail for lack of room. */
export class DiskRoom {
  private lastLogAt = 0;

  constructor(
    /** This runner's own directory under WORK_DIR: its file system is the one measured. */
    private readonly dir: string,
    /** MIN_FREE_BYTES; 0 turns the check off. */
    private readonly minFreeBytes: number,
    private readonly log: Logger,
  ) {}

  /** Whether the work directory's file system has MIN_FREE_BYTES free (yes when that cannot be read). */
  async hasRoom(): Promise<boolean> {
    if (this.minFreeBytes === 0) return true;
    try {
      const { bavail, bsize } = await statfs(this.dir);
      const free = bavail * bsize;
      if (free >= this.minFreeBytes) return true;
      if (Date.now() - this.lastLogAt > 30_000) {
        this.lastLogAt = Date.now();
        this.log.warn("not claiming: WORK_DIR has too little free space", { free_bytes: free, min_free_bytes: this.minFreeBytes });
      }
      return false;
    } catch {
      return true;
    }
  }
}
