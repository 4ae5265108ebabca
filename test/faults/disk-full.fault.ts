import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, stat, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../helpers/clips";
import { expectCleanEndState, report, startFaultStack, until, variationRows, type FaultStack } from "./support";

const run = promisify(execFile);
const KiB = 1024;

let fs: FaultStack;
let disk: string;
let mounted = false;
beforeAll(async () => {
  // A tiny tmpfs of our own: WORK_DIR is a directory inside it, and a filler file next to it (outside WORK_DIR,
  // so the runner's sweeps leave it alone) decides how much room the runner has. Needs root (mount), as in CI.
  disk = await mkdtemp(join(tmpdir(), "vr-fault-disk-"));
  await run("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0777", "tmpfs", disk]).catch((err: unknown) => {
    throw new Error(`the disk-full drill needs to mount a tmpfs (run as root): ${String(err)}`);
  });
  mounted = true;
  await mkdir(join(disk, "work"));
  // MIN_FREE_BYTES scaled to the 4 MiB disk: below 256 KiB free the runner claims nothing.
  fs = await startFaultStack({ label: "diskfull", runners: 1, runnerEnv: { WORK_DIR: join(disk, "work"), MIN_FREE_BYTES: String(256 * KiB) } });
});
afterAll(async () => {
  await fs?.stop();
  if (mounted) await run("umount", [disk]);
  await rm(disk, { recursive: true, force: true });
});

const terminal = async (id: string) => ["completed", "failed", "cancelled"].includes((await fs.user.getJob(id)).status);

describe("fault: WORK_DIR runs out of space", () => {
  it("fails a source bigger than the runner's free disk after the attempt cap, with a readable reason, and keeps serving work that fits", async () => {
    const big = await makeClip({ seconds: 30 });
    const small = await makeClip({ seconds: 1 });
    const bigSize = (await stat(big)).size;
    // Room for the small job (source, two encodes, a thumbnail) but only for a third of the big source.
    const { bavail, bsize } = await statfs(disk);
    const room = Math.min(Math.floor(bigSize / 3), 1024 * KiB);
    await writeFile(join(disk, "filler"), Buffer.alloc(bavail * bsize - room));
    const freeBefore = (await statfs(disk)).bavail * bsize;

    const full = await fs.user.createJob([big], 1);
    await until("the job on a full disk to finish", () => terminal(full.id), 120_000, 200);
    const [failed] = await variationRows(fs.db, [full.id]);
    const view = await fs.user.getJob(full.id);
    // A local failure counts an attempt (another runner may have room) and ends after the cap: never forever.
    expect(failed).toMatchObject({ status: "failed", outputKey: null, attempts: 3 });
    expect(failed!.error).toBe("source download failed: the runner ran out of disk space");
    expect(view.files[0].variations[0].error).toBe(failed!.error);
    expect(view.status).toBe("failed");
    expect(JSON.stringify(view)).not.toContain(disk);

    // Same runner process, same small disk: a job that fits still goes through.
    const runnerPid = fs.stack.pids.runner!;
    const next = await fs.user.createJob([small], 2);
    await until("the small job to finish", () => terminal(next.id), 90_000, 200);
    expect((await fs.user.getJob(next.id)).status).toBe("completed");
    expect(() => process.kill(runnerPid, 0)).not.toThrow();
    const health = await (await fetch(`http://127.0.0.1:${fs.metricsPort}/healthz`)).json();
    expect(health.ok).toBe(true);
    // The partial downloads and the sources are gone once the jobs finished: the room is back.
    const freeAfter = await until("WORK_DIR to be emptied", async () => {
      const free = (await statfs(disk)).bavail * bsize;
      return free >= freeBefore - 8 * KiB && free;
    }, 10_000, 100);
    const end = await expectCleanEndState(fs, [full.id, next.id], [disk]);
    report("source bigger than the runner's disk", {
      roomGivenKiB: Math.round(freeBefore / KiB),
      sourceKiB: Math.round(bigSize / KiB),
      variation: `${failed!.status}/attempts=${failed!.attempts}`,
      reason: failed!.error,
      nextJob: `completed (${(await variationRows(fs.db, [next.id])).length} variations) on the same runner pid ${runnerPid}`,
      freeKiBAfter: Math.round(freeAfter / KiB),
      end,
    });
  });
});
