/** Per-user quotas, one operation per file: usage fragments (usage), one user's usage, one user's storage, storage per user, evictables. */
export * from "./usage";
export * from "./get-user-usage";
export * from "./get-storage-bytes";
export * from "./list-storage-by-user";
export * from "./list-evictable-of-user";
export * from "./explain-refusal";
