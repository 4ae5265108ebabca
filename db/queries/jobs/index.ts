/**
 * Job queries, one operation per file: create (form, ingest, uploads), view (detail, output, thumbnail), list,
 * cancel (the request only; the edge decides how long to wait), download, delete. `present` turns rows into the
 * public Job, `load` holds the ownership-checked row reads they share.
 */
export * from "./present";
export { ownedBy } from "./load";
export * from "./create";
export * from "./view";
export * from "./estimate-queue";
export * from "./list";
export * from "./cancel";
export * from "./download";
export * from "./delete";
