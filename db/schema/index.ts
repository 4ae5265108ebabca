export * from "./users";
export * from "./jobs";
