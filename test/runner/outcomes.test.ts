import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { MAX_ATTEMPTS } from "../../db/queries/states";
import { variations } from "../../db/schema";
import { LocalError } from "../../runner/local-errors";
import { createLogger } from "../../runner/log";
import { local } from "../../runner/outcomes";
import { useTestLibsql } from "../helpers/libsql";
import { freshDb, getVariationRows, seedJob } from "../helpers/seed";

const server = useTestLibsql();

/** A variation on its last attempt, held by `runnerId`: what a local failure does to it decides whether it fails. */
async function onLastAttempt(label: string) {
  const { db } = await freshDb(server, label);
  const j = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1 });
  const id = j.variationIds[0]!;
  await db
    .update(variations)
    .set({ status: "running", runnerId: "runner-local", attempts: MAX_ATTEMPTS, claims: MAX_ATTEMPTS, leaseExpiresAt: Date.now() + 60_000 })
    .where(eq(variations.id, id));
  const task = { id, jobId: j.jobId, attempt: MAX_ATTEMPTS, own: { variationId: id, runnerId: "runner-local", attempt: MAX_ATTEMPTS }, claim: { sourceId: j.sourceIds[0]! }, stopReason: null };
  const troubles: string[] = [];
  const ctx = { config: { WORK_DIR: "/nonexistent", STALL_MS: 60_000 }, db, log: createLogger({ sink: () => {} }), onLocalTrouble: (e: LocalError) => troubles.push(e.code) };
  return { db, jobId: j.jobId, task, ctx, troubles };
}

describe("a failure of the runner's own machine", () => {
  it("hands a variation back without counting an attempt when the runner has no FFmpeg user left, so one broken host fails no video", async () => {
    const { db, jobId, task, ctx, troubles } = await onLastAttempt("local-nouid");
    expect(await local(ctx, task, new LocalError("ENOUID", "encoding failed"))).toBe("released");
    expect((await getVariationRows(db, jobId))[0]).toMatchObject({ status: "queued", error: null, attempts: MAX_ATTEMPTS - 1 });
    expect(troubles).toEqual([]);
  });

  it("counts the attempt for a full disk, so a source too big for every runner ends as failed with a readable reason", async () => {
    const { db, jobId, task, ctx } = await onLastAttempt("local-enospc");
    expect(await local(ctx, task, new LocalError("ENOSPC", "source download failed"))).toBe("failed");
    expect((await getVariationRows(db, jobId))[0]).toMatchObject({ status: "failed", error: "source download failed: the runner ran out of disk space" });
  });

  it("hands a full-disk variation back uncounted, without pausing claims, once giving back the runner's idle cached sources made room", async () => {
    const { db, jobId, task, ctx, troubles } = await onLastAttempt("local-enospc-cache");
    let removedAwaited = false;
    const asked: string[] = [];
    const roomFromCache = (t: { id: string }) => {
      asked.push(t.id);
      return { refund: true, removed: new Promise<void>((r) => setTimeout(r, 10)).then(() => void (removedAwaited = true)) };
    };
    expect(await local({ ...ctx, roomFromCache }, task, new LocalError("ENOSPC", "source download failed"))).toBe("released");
    expect((await getVariationRows(db, jobId))[0]).toMatchObject({ status: "queued", error: null, attempts: MAX_ATTEMPTS - 1 });
    expect({ asked, removedAwaited, troubles }).toEqual({ asked: [task.id], removedAwaited: true, troubles: [] });
  });

  it("counts a full disk when the runner's cache gave nothing back, and asks the cache only about a full disk", async () => {
    const { db, jobId, task, ctx, troubles } = await onLastAttempt("local-enospc-nothing");
    const asked: string[] = [];
    const roomFromCache = () => (asked.push("asked"), { refund: false, removed: Promise.resolve() });
    expect(await local({ ...ctx, roomFromCache }, task, new LocalError("EDQUOT", "encoding failed"))).toBe("failed");
    expect((await getVariationRows(db, jobId))[0]).toMatchObject({ status: "failed", error: "encoding failed: the runner ran out of disk quota" });
    expect({ asked, troubles }).toEqual({ asked: ["asked"], troubles: ["EDQUOT"] });

    const other = await onLastAttempt("local-eacces");
    expect(await local({ ...other.ctx, roomFromCache }, other.task, new LocalError("EACCES", "source download failed"))).toBe("failed");
    expect(asked).toEqual(["asked"]);
  });
});
