import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { API_TYPES_FILE, generateApiTypes } from "../../cli/api-types";

describe("cli/api.d.ts", () => {
  it("matches the API's OpenAPI document (run `npm run cli:types` after changing a route or schema)", async () => {
    const committed = await readFile(API_TYPES_FILE, "utf8");
    const fresh = await generateApiTypes();
    expect(committed === fresh, "cli/api.d.ts is stale: run `npm run cli:types` and commit it").toBe(true);
  });
});
