// The variation side of the state machine, one operation per file (table of arrows: docs/runner.md).
export { MAX_ATTEMPTS, type Ownership, type StopStage } from "../states";
export * from "./claim";
export * from "./fail-source";
export * from "./find-ticket";
export * from "./list-job-outputs";
export * from "./record-params";
export * from "./record-output-digest";
export * from "./recover";
export * from "./round-trip";
export * from "./settle";
export * from "./redraw";
export * from "./sibling-fingerprints";
export * from "./lower-distinctness";
