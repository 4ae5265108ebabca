export { forgetMultipartUpload } from "./forget-multipart-upload";
export { listAbandonedMultipartUploads } from "./list-abandoned-multipart-uploads";
export { postponeMultipartUpload } from "./postpone-multipart-upload";
export { recordMultipartUpload } from "./record-multipart-upload";
