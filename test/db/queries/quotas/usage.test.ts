import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Db } from "../../../../db/client";
import { newId } from "../../../../db/ids";
import type { UserLimits } from "../../../../db/limits";
import { createJobFromUploads } from "../../../../db/queries/jobs/create";
import { deleteFinishedJobRows } from "../../../../db/queries/objects";
import { fitsQuota, getStorageBytes, listStorageByUser } from "../../../../db/queries/quotas";
import { createUpload, deleteUnusedUpload, markUploadAborted, markUploadCompleted } from "../../../../db/queries/uploads";
import { createUser } from "../../../../db/queries/users";
import { useTestLibsql } from "../../../helpers/libsql";
import { freshDb, seedJob } from "../../../helpers/seed";

const server = useTestLibsql();
const limits: UserLimits = { storageBytes: 1e12, activeJobs: 100, queuedVariations: 10_000, openUploads: 100, unusedUploads: 100 };

/** What the user stores, summed from every row (what users.stored_bytes stands for). */
async function summedBytes(db: Db, userId: string): Promise<number> {
  const [row] = await db.all<{ bytes: number }>(sql`SELECT
    (SELECT coalesce(sum(s.size), 0) FROM sources s JOIN jobs j ON j.id = s.job_id WHERE j.user_id = ${userId})
    + (SELECT coalesce(sum(v.output_size), 0) FROM variations v JOIN jobs j ON j.id = v.job_id WHERE j.user_id = ${userId})
    + (SELECT coalesce(sum(u.size), 0) FROM uploads u WHERE u.user_id = ${userId} AND u.status IN ('uploading', 'completed')) AS bytes`);
  return Number(row!.bytes);
}

async function openUpload(db: Db, userId: string, size: number) {
  return createUpload(
    db,
    { id: newId(), userId, filename: "clip.mp4", size, partSize: size, partCount: 1, objectKey: `uploads/${newId()}`, r2UploadId: "r2", idempotencyKey: null, limits },
    Date.now(),
  );
}

describe("a user's stored bytes", () => {
  it("follow every way bytes come and go: uploads opened, completed, aborted, deleted and consumed, outputs recorded and cleared, sources and jobs deleted", async () => {
    const { db } = await freshDb(server, "stored_bytes");
    const userId = (await createUser(db, { email: `s-${newId()}@test.example`, password: "pw-for-storage", role: "user" })).id;
    const other = (await createUser(db, { email: `o-${newId()}@test.example`, password: "pw-for-storage", role: "user" })).id;
    const seen: number[] = [];
    const check = async () => {
      const counted = await getStorageBytes(db, userId);
      expect(counted).toBe(await summedBytes(db, userId));
      seen.push(counted);
    };

    const kept = await openUpload(db, userId, 1000);
    const aborted = await openUpload(db, userId, 300);
    const dropped = await openUpload(db, userId, 70);
    await openUpload(db, other, 5);
    await check();
    await markUploadCompleted(db, kept.id, Date.now());
    await markUploadAborted(db, aborted.id);
    await check();
    await deleteUnusedUpload(db, dropped.id);
    await check();

    // The completed upload becomes a job's source (consumed: its bytes move, they are not counted twice).
    const jobId = newId();
    await createJobFromUploads(db, { id: jobId, userId, variationsPerVideo: 3, retentionMs: 3600_000, uploadIds: [kept.id], limits }, Date.now());
    await check();
    await db.run(sql`UPDATE variations SET status = 'completed', output_size = 400 WHERE job_id = ${jobId}`);
    await check();
    // A retry clears a failed variation's output; a source's size is corrected.
    await db.run(sql`UPDATE variations SET output_size = NULL WHERE rowid = (SELECT min(rowid) FROM variations WHERE job_id = ${jobId})`);
    await db.run(sql`UPDATE sources SET size = 900 WHERE job_id = ${jobId}`);
    await check();

    // A second job: one source deleted alone (its variations cascade while the job stays), then the job itself.
    const seeded = await seedJob(db, { userId, sources: [{ objectKey: "a" }, { objectKey: "b" }], variationsPerSource: 2, status: "completed" });
    await db.run(sql`UPDATE variations SET output_size = 50 WHERE job_id = ${seeded.jobId}`);
    await check();
    await db.run(sql`DELETE FROM sources WHERE id = ${seeded.sourceIds[0]}`);
    await check();
    await db.run(sql`UPDATE jobs SET status = 'completed' WHERE id = ${jobId}`);
    expect(await deleteFinishedJobRows(db, jobId)).toBe(true);
    expect(await deleteFinishedJobRows(db, seeded.jobId)).toBe(true);
    await check();

    expect(seen).toEqual([1370, 1070, 1000, 1000, 2200, 1700, 1902, 1801, 0]);
    expect(await getStorageBytes(db, other)).toBe(5);
    expect(await listStorageByUser(db)).toEqual([{ userId: other, bytes: 5 }]);
  });

  it("are read by the admission checks without visiting the user's finished jobs, variations or sources", async () => {
    const { db } = await freshDb(server, "stored_bytes_plan");
    const userId = newId();
    const check = fitsQuota(userId, limits, { activeJobs: 1, queuedVariations: 10, openUploads: 1, unusedUploads: 1, storageBytes: 10 });
    const plan = await db.all<{ detail: string }>(sql`EXPLAIN QUERY PLAN SELECT ${check} AS fits`);
    // Every table read is an index probe on the user's live rows (active jobs, their queued variations, open and
    // unused uploads, ingests in flight) or the users row: no history, no scan.
    const reads = plan.map((p) => p.detail).filter((d) => /^(SEARCH|SCAN) /.test(d) && d !== "SCAN CONSTANT ROW");
    expect(reads.length).toBeGreaterThan(0);
    for (const d of reads) {
      expect(d).toMatch(
        /USING (COVERING )?INDEX (jobs_user_status_idx \(user_id=\? AND status=\?\)|variations_job_idx \(job_id=\? AND status=\?\)|uploads_user_status_idx \(user_id=\? AND status=\?\)|sqlite_autoindex_users_1 \(id=\?\)|ingests_user_idx \(user_id=\?\))$/,
      );
    }
  });
});
