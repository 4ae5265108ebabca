import { and, eq } from "drizzle-orm";
import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/** The upload of this key was completed or aborted: nothing is left to clean up. */
export async function forgetMultipartUpload(db: Db, input: { uploadId: string; objectKey: string }): Promise<void> {
  // The key too: an upload id a runner names is only forgotten for the key it was opened for.
  await db.delete(multipartUploads).where(and(eq(multipartUploads.uploadId, input.uploadId), eq(multipartUploads.objectKey, input.objectKey)));
}
