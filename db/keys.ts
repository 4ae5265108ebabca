/**
 * Object keys in R2, the one contract the edge and the runners share about storage. Every key a runner writes
 * carries the attempt that produced it: a late finisher of attempt n can only ever touch `…a<n>…`, never the
 * object attempt n+1 recorded.
 */

/** Top-level prefixes, in the order the orphan rule walks them. */
/**
 * The error code of the edge's `/internal/objects/<key>` 404 for a key the bucket does not hold. Any other 404 (a
 * route that is not there: a wrong EDGE_URL) says nothing about the object, and must not fail a user's video.
 */
export const NO_SUCH_OBJECT = "no_such_object";

export const KEY_PREFIXES = ["outputs/", "thumbs/", "sources/", "uploads/"] as const;

export const sourceKey = (jobId: string, sourceId: string) => `sources/${jobId}/${sourceId}`;
export const uploadKey = (uploadId: string) => `uploads/${uploadId}`;
export const outputPrefix = (jobId: string) => `outputs/${jobId}/`;
export const outputKey = (jobId: string, variationId: string, attempt: number) =>
  `${outputPrefix(jobId)}${variationId}.a${attempt}.mp4`;
export const thumbnailKey = (jobId: string) => `thumbs/${jobId}.jpg`;
/**
 * A still of one variation's output, made by the attempt that produced it: beside the output, so everything that
 * knows a job's outputs (the runner's orphan sweep of `outputs/<job>/`, the job's purge, the orphan rule) knows it.
 */
export const variationThumbnailKey = (jobId: string, variationId: string, attempt: number) =>
  `${outputPrefix(jobId)}${variationId}.a${attempt}.jpg`;

/**
 * The inverse of {@link outputKey} and {@link variationThumbnailKey}: job, variation and attempt of
 * `outputs/<job>/<variation>.a<n>.mp4` (or `.jpg`), else null. Both are attempt-scoped alike: only the attempt that
 * wrote one may delete it while it runs, and the database may record it.
 */
export function parseOutputKey(key: string): { jobId: string; variationId: string; attempt: number } | null {
  const m = /^outputs\/([^/]+)\/([^/]+)\.a([1-9][0-9]{0,8})\.(?:mp4|jpg)$/.exec(key);
  return m ? { jobId: m[1]!, variationId: m[2]!, attempt: Number(m[3]) } : null;
}
