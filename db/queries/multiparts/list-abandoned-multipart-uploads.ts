import { asc, lte } from "drizzle-orm";
import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/** Multipart uploads on record whose abort is due by `now`, the longest due first. */
export async function listAbandonedMultipartUploads(db: Db, now: number, limit: number) {
  return db
    .select({ uploadId: multipartUploads.uploadId, objectKey: multipartUploads.objectKey })
    .from(multipartUploads)
    .where(lte(multipartUploads.dueAt, now))
    .orderBy(asc(multipartUploads.dueAt))
    .limit(limit);
}
