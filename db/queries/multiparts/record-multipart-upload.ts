import type { Db } from "../../client";
import { multipartUploads } from "../../schema";

/**
 * Records an R2 multipart upload the edge just opened, before anyone sends it a part: from here on the lifecycle
 * rule aborts it if nobody completes or aborts it (see `multipartUploads`). The caller aborts the upload itself when
 * this fails, so none is left open unrecorded.
 */
export async function recordMultipartUpload(db: Db, input: { uploadId: string; objectKey: string }, now: number): Promise<void> {
  // A repeat of the same id (a write whose reply was lost, sent again by a retry) changes nothing.
  await db.insert(multipartUploads).values({ ...input, createdAt: now }).onConflictDoNothing();
}
