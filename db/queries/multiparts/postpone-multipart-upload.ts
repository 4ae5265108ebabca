import { eq } from "drizzle-orm";
import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/**
 * An abort that failed (R2 erring) is tried again at `dueAt`: listed longest due first, a row that kept failing would
 * otherwise hold every later one.
 */
export async function postponeMultipartUpload(db: Db, uploadId: string, dueAt: number): Promise<void> {
  await db.update(multipartUploads).set({ dueAt }).where(eq(multipartUploads.uploadId, uploadId));
}
