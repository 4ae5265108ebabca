import { sql } from "drizzle-orm";
import { REPLAY_SAFE, type Db } from "../../client";

/**
 * Puts an R2 multipart upload on record, due for the lifecycle rule's abort at `dueAt` (see `multipartUploads`): the
 * edge records one it opens before anyone sends it a part (the caller aborts the upload itself when this fails, so
 * none is left open unrecorded); an upload API drop records one it could not abort, due at once.
 *
 * Replay-safe (a row of given values; a second run finds it and changes nothing): a pooled connection that dropped
 * it is sent it again, instead of failing a form upload that may have stored gigabytes before this file.
 */
export async function recordMultipartUpload(db: Db, input: { uploadId: string; objectKey: string }, dueAt: number): Promise<void> {
  await db.run(sql`${REPLAY_SAFE}INSERT INTO multipart_uploads (upload_id, object_key, due_at)
    VALUES (${input.uploadId}, ${input.objectKey}, ${dueAt})
    ON CONFLICT (upload_id) DO NOTHING`);
}
