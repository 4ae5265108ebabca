import { eq } from "drizzle-orm";
import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/**
 * An abort that failed (R2 erring): the row is looked at again once `openedAt` is past the abandon age, so one
 * failing upload does not hold the others (the rule lists oldest first).
 */
export async function postponeMultipartUpload(db: Db, uploadId: string, openedAt: number): Promise<void> {
  await db.update(multipartUploads).set({ createdAt: openedAt }).where(eq(multipartUploads.uploadId, uploadId));
}
