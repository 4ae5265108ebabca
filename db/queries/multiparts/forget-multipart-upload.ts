import { eq } from "drizzle-orm";
import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/** The upload was completed or aborted: nothing is left to clean up. True when this call removed the row. */
export async function forgetMultipartUpload(db: Db, uploadId: string): Promise<boolean> {
  const rows = await db.delete(multipartUploads).where(eq(multipartUploads.uploadId, uploadId)).returning({ id: multipartUploads.uploadId });
  return rows.length === 1;
}
