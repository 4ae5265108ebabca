import { eq, sql } from "drizzle-orm";
import { createDb, type Db } from "../../db/client";
import { newId } from "../../db/ids";
import { migrateDb } from "../../db/migrate";
import { jobs, sources, users, variations, type JobStatus } from "../../db/schema";
import type { TestLibsqlServer } from "./libsql";

let dbCounter = 0;

/**
 * A brand-new migrated database on the given server (one per test keeps "oldest claimable" and sweeps
 * independent of other tests). Returns the db and its URL (for runner processes).
 */
export async function freshDb(server: TestLibsqlServer, label = "t"): Promise<{ db: Db; url: string }> {
  const url = server.dbUrl(`${label.replace(/[^A-Za-z0-9_-]/g, "_")}_${process.pid}_${++dbCounter}`);
  await migrateDb(url);
  return { db: createDb(url), url };
}

export interface SeedJobOptions {
  /** One entry per source: the object key the runner will download (several rows may share one fixture). */
  sources: { objectKey: string; name?: string }[];
  variationsPerSource?: number;
  status?: JobStatus;
  retentionMs?: number;
  createdAt?: number;
  /** Set to skip the runner's best-effort thumbnail (e.g. with an FFmpeg stand-in). */
  thumbnailKey?: string | null;
  userId?: string;
}

export interface SeededJob {
  jobId: string;
  userId: string;
  sourceIds: string[];
  /** Variation ids in claim order (source by source). */
  variationIds: string[];
}

/** Inserts a user (unless given), a job, its sources and queued variations with distinct seeds. */
export async function seedJob(db: Db, opts: SeedJobOptions): Promise<SeededJob> {
  const now = opts.createdAt ?? Date.now();
  const userId = opts.userId ?? newId();
  if (!opts.userId) {
    await db.insert(users).values({ id: userId, email: `${userId}@test.local`, passwordHash: "x", createdAt: now });
  }
  const jobId = newId();
  const perSource = opts.variationsPerSource ?? 1;
  const sourceRows = opts.sources.map((s, i) => ({
    id: newId(),
    jobId,
    position: i + 1,
    name: s.name ?? `clip${i + 1}.mp4`,
    size: 1,
    contentType: "video/mp4",
    objectKey: s.objectKey,
    createdAt: now,
  }));
  let seed = 1000 + Math.floor(Math.random() * 1_000_000);
  const variationRows = sourceRows.flatMap((s) =>
    Array.from({ length: perSource }, (_, i) => ({
      id: newId(),
      jobId,
      sourceId: s.id,
      position: i + 1,
      seed: seed++,
      createdAt: now,
    })),
  );
  await db.batch([
    db.insert(jobs).values({
      id: jobId,
      userId,
      status: opts.status ?? "queued",
      variationsPerVideo: perSource,
      totalVariations: variationRows.length,
      thumbnailKey: opts.thumbnailKey ?? null,
      createdAt: now,
      retentionMs: opts.retentionMs ?? 24 * 3600_000,
      updatedAt: now,
    }),
    db.insert(sources).values(sourceRows),
    db.insert(variations).values(variationRows),
  ]);
  return { jobId, userId, sourceIds: sourceRows.map((s) => s.id), variationIds: variationRows.map((v) => v.id) };
}

export async function getJobRow(db: Db, jobId: string) {
  const [row] = await db.select().from(jobs).where(eq(jobs.id, jobId));
  return row;
}

export async function getVariationRows(db: Db, jobId: string) {
  return db.select().from(variations).where(eq(variations.jobId, jobId)).orderBy(sql`rowid`);
}

/** Every object key these variation rows record (output and its still), sorted: what `outputs/<job>/` must hold. */
export function recordedKeys(rows: { outputKey: string | null; thumbnailKey?: string | null }[]): string[] {
  return rows.flatMap((r) => [r.outputKey, r.thumbnailKey ?? null]).filter((k): k is string => k !== null).sort();
}

/** What the edge's cancel does for a processing job (the edge owns the real route; runners only see the row). */
export async function requestCancelRow(db: Db, jobId: string, now = Date.now()): Promise<void> {
  await db.batch([
    db
      .update(jobs)
      .set({ cancelRequestedAt: now, status: sql`CASE WHEN status = 'processing' THEN 'cancelling' ELSE status END`, updatedAt: now })
      .where(eq(jobs.id, jobId)),
    db.run(sql`UPDATE variations SET status = 'cancelled', finished_at = ${now} WHERE job_id = ${jobId} AND status = 'queued'`),
  ]);
}
