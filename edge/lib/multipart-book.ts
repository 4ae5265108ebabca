import type { Db } from "../../db/client";
import { loggable } from "../../db/errors";
import { MULTIPART_ABANDON_MS } from "../../db/limits";
import { forgetMultipartUpload, recordMultipartUpload } from "../../db/queries/multiparts";

/**
 * Opens R2 multipart uploads on the record (db `multipart_uploads`): R2 lists no unfinished upload, so one nobody
 * completes or aborts is found only through its row, by the lifecycle rule abortAbandonedMultiparts.
 */
export interface MultipartBook {
  /** Creates the upload and records it; when the record fails, the upload is aborted and the error thrown. */
  open(bucket: R2Bucket, key: string, options?: R2MultipartOptions): Promise<R2MultipartUpload>;
  /**
   * The upload was completed or aborted. Never throws: a row left behind only makes the rule's abort find no such
   * upload a day later, and a completed object is not touched by an abort.
   */
  closed(upload: { uploadId: string; key: string }): Promise<void>;
}

export function multipartBook(db: Db, clock: () => number = Date.now): MultipartBook {
  return {
    async open(bucket, key, options) {
      const upload = await bucket.createMultipartUpload(key, options);
      try {
        await recordMultipartUpload(db, { uploadId: upload.uploadId, objectKey: key }, clock() + MULTIPART_ABANDON_MS);
      } catch (err) {
        await upload.abort().catch(() => {});
        throw err;
      }
      return upload;
    },
    async closed({ uploadId, key }) {
      await forgetMultipartUpload(db, { uploadId, objectKey: key }).catch((err) =>
        console.error("multipart row not removed; the lifecycle rule will", loggable(err)),
      );
    },
  };
}
