/**
 * Job queries, one operation per file: create (form, ingest, uploads), view (detail, output, thumbnail), list,
 * cancel and pause (the request only; the edge decides how long to wait), resume, retry failed, add variations
 * (the three reopen a job: reopen.ts), download, delete. `present` turns rows into the
 * public Job, `load` holds the ownership-checked row reads they share.
 */
export * from "./present";
export { ownedBy, ownerViewer } from "./load";
export * from "./create";
export * from "./find-by-idempotency-key";
export * from "./view";
export * from "./estimate-queue";
export * from "./list";
export * from "./cancel";
export * from "./pause-job";
export * from "./resume-job";
export * from "./retry-job";
export * from "./add-variations";
export type { Reopened } from "./reopen";
export * from "./source-keys";
export * from "./download";
export * from "./delete";
