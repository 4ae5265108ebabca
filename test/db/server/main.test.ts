import { execa } from "execa";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tempDirs } from "../../helpers/tmp";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const dirs = tempDirs("vr-db-server-main");
afterAll(() => dirs.cleanup());

describe("npm run db:server", () => {
  it("says the port is taken (is npm start running?) instead of crashing, when something already listens there", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as { port: number }).port;
    try {
      const res = await execa("npm", ["run", "--silent", "db:server"], {
        cwd: root,
        reject: false,
        timeout: 60_000,
        env: { LIBSQL_PORT: String(port), LIBSQL_DATA_DIR: await dirs.make(), LIBSQL_AUTH_TOKEN: "main-test-token-123" },
      });
      expect(res.exitCode).toBe(1);
      expect(res.stderr).toContain(`127.0.0.1:${port} is already in use`);
      expect(res.stderr).toContain("npm start");
      expect(res.stderr).not.toMatch(/node:net|at Server/);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});
