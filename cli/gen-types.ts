import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { API_TYPES_FILE, generateApiTypes } from "./api-types";

// npm run cli:types — rewrites cli/api.d.ts from the API's OpenAPI document.
await writeFile(API_TYPES_FILE, await generateApiTypes());
console.log(`wrote ${fileURLToPath(API_TYPES_FILE)}`);
