import { defineConfig } from "vitest/config";

// `npm run test:faults`: fault drills against the real local stack (libSQL server, wrangler dev, runners, FFmpeg).
// Each file starts its own stack and breaks something on purpose, so files run one at a time. Files are named
// *.fault.ts so the default `npm test` projects never pick them up.
export default defineConfig({
  test: {
    name: "faults",
    environment: "node",
    include: ["test/faults/**/*.fault.ts"],
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 120_000,
    setupFiles: ["./test/setup/fault-logs.ts"],
    reporters: ["default", "./test/setup/summary-reporter.ts"],
  },
});
