import { asc, lt } from "drizzle-orm";
import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/** Multipart uploads opened before `openedBefore` and still neither completed nor aborted, oldest first. */
export async function listAbandonedMultipartUploads(db: Db, openedBefore: number, limit: number) {
  return db
    .select({ uploadId: multipartUploads.uploadId, objectKey: multipartUploads.objectKey })
    .from(multipartUploads)
    .where(lt(multipartUploads.createdAt, openedBefore))
    .orderBy(asc(multipartUploads.createdAt))
    .limit(limit);
}
