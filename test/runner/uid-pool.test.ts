import { describe, expect, it } from "vitest";
import { resolveExecutable } from "../../runner/config";
import { asLocalError } from "../../runner/local-errors";
import { UidPool } from "../../runner/uid-pool";

// The killer switches uids: root only. Uids of their own (other test files use 62000–62012, 62100–62111 and 62120–62123).
describe.skipIf(process.getuid?.() !== 0 || !resolveExecutable("perl"))("the uid pool of FFMPEG_USER's range", () => {
  it("keeps a uid whose run's files could not be sealed out of the pool, and says so, instead of losing it unsaid", async () => {
    const quarantined: number[] = [];
    const pool = new UidPool({ uid: 62020, lastUid: 62022 }, { onQuarantine: (uid) => quarantined.push(uid) });
    const [a, b] = [await pool.take(), await pool.take()];
    await pool.release(a, async () => {
      throw Object.assign(new Error("EIO: i/o error, fchown"), { code: "EIO" });
    });
    expect(quarantined).toEqual([a]);
    await pool.release(b);
    // Only b comes back: a third take waits for ever (until aborted) rather than getting a.
    expect(await pool.take()).toBe(b);
    const stop = new AbortController();
    const waiting = pool.take(stop.signal);
    stop.abort();
    await expect(waiting).rejects.toMatchObject({ code: "ABORT_ERR" });
  });

  it("fails a child waiting for a uid, and every later one, as the runner's own trouble once the last uid is quarantined, instead of leaving them waiting for ever", async () => {
    const quarantined: number[] = [];
    const pool = new UidPool({ uid: 62020, lastUid: 62022 }, { onQuarantine: (uid) => quarantined.push(uid) });
    const unsealable = async () => {
      throw Object.assign(new Error("EIO: i/o error, fchown"), { code: "EIO" });
    };
    const [a, b] = [await pool.take(), await pool.take()];
    const waiting = pool.take().catch((e: unknown) => e);
    await pool.release(a, unsealable);
    expect(pool.usable).toBe(1);
    await pool.release(b, unsealable);
    expect(quarantined).toEqual([a, b]);
    expect(pool.usable).toBe(0);
    const err = await waiting;
    expect(err).toMatchObject({ code: "ENOUID" });
    // A local failure of its own (runner/outcomes.ts hands the variation back uncounted): no uid, no path.
    expect(asLocalError(err, "encoding failed")?.message).toBe("encoding failed: the runner has no FFmpeg user left to run it as");
    await expect(pool.take()).rejects.toMatchObject({ code: "ENOUID" });
  });
});
