import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export const TEST_RUNNER_TOKEN = "test-runner-token-0123456789abcdef";

export default defineConfig({
  test: {
    reporters: ["default", "./test/setup/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "node",
          environment: "node",
          // *.node.test.ts under test/edge: edge code that needs tools only Node can start (unzip, Python).
          include: ["test/**/*.test.ts"],
          exclude: ["test/edge/**/!(*.node).test.ts", "test/stack/**", "test/ui/**", "node_modules/**"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                LIBSQL_URL: inject("libsqlUrl"),
                RUNNER_TOKEN: TEST_RUNNER_TOKEN,
              },
            },
          })),
        ],
        test: {
          name: "edge",
          include: ["test/edge/**/*.test.ts"],
          exclude: ["test/edge/**/*.node.test.ts"],
          globalSetup: ["./test/setup/libsql-global.ts"],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        // Whole-stack tests start real processes (libSQL server, wrangler dev, runners, Chromium): one file at a time.
        test: {
          name: "stack",
          environment: "node",
          include: ["test/stack/**/*.test.ts", "test/ui/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
          // A page that shows its new state after 1 s (vitest's default) on a loaded machine is still right: the
          // assertions wait for what a user would see, and fail only when it never comes.
          expect: { poll: { timeout: 15_000 } },
        },
      },
    ],
  },
});
