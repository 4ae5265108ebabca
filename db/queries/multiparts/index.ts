export { forgetMultipartUpload } from "./forget-multipart-upload";
export { listAbandonedMultipartUploads } from "./list-abandoned-multipart-uploads";
export { recordMultipartUpload } from "./record-multipart-upload";
