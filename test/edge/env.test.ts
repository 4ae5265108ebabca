import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ConfigSchema, loadConfig, type Bindings } from "../../edge/env";

const base = { LIBSQL_URL: "http://127.0.0.1:8080", RUNNER_TOKEN: "0123456789abcdef0123" };

describe("edge configuration: RUNNER_TOKEN", () => {
  it("refuses a placeholder left from .env.example (long enough, but no secret), with a message saying so", () => {
    const bad = ConfigSchema.safeParse({ ...base, RUNNER_TOKEN: "replace-with-the-edge-runner-token-secret" });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues.map((i) => [i.path.join("."), i.message])).toEqual([
      ["RUNNER_TOKEN", "RUNNER_TOKEN is still a placeholder (replace-with-…): set it to a random secret, the same as the runners'"],
    ]);
  });

  it("stops the worker with that message rather than accept runners holding the placeholder", () => {
    const bindings = { ...(env as unknown as Bindings), RUNNER_TOKEN: "replace-with-anything-at-all" };
    expect(() => loadConfig(bindings)).toThrow(/^Invalid worker configuration: RUNNER_TOKEN: RUNNER_TOKEN is still a placeholder/);
  });

  it("takes any other secret of 16 characters or more, the words elsewhere in it included", () => {
    for (const token of ["0123456789abcdef0123", "my-replace-with-token-xyz"]) {
      expect(ConfigSchema.safeParse({ ...base, RUNNER_TOKEN: token }).success, token).toBe(true);
    }
    expect(ConfigSchema.safeParse({ ...base, RUNNER_TOKEN: "short" }).error?.issues[0]?.message).toBe("RUNNER_TOKEN must be at least 16 characters");
  });
});
