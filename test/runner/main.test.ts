import { readdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { migrateDb } from "../../db/migrate";
import { startTestLibsql, type TestLibsqlServer } from "../helpers/libsql";
import { freePort } from "../helpers/ports";
import { startRunnerProcess, type RunnerProcess } from "../helpers/runner";
import { tempDirs } from "../helpers/tmp";

const dirs = tempDirs("vr-runner-main");
let server: TestLibsqlServer | undefined;
let runner: RunnerProcess | undefined;
afterAll(async () => {
  await runner?.destroy();
  await server?.close();
  await dirs.cleanup();
});

describe("runner start-up", () => {
  it("waits for a database that is not up yet (no metrics port keeping it alive) and starts once it answers", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/startup/`;
    runner = startRunnerProcess({
      LIBSQL_URL: url,
      EDGE_URL: "http://127.0.0.1:9",
      RUNNER_TOKEN: "runner-main-test-token",
      WORK_DIR: await dirs.make(),
      METRICS_PORT: "",
    });
    await runner.waitForLog(/cannot reach the database yet; retrying attempt=2/, 30_000);
    // Before: the retry's wait was all the process did, unref'd, so it ended there with exit 0.
    expect(runner.child.exitCode).toBeNull();
    server = await startTestLibsql({ port });
    await migrateDb(url);
    await runner.waitForLog(/runner started/, 60_000);
    expect(runner.child.exitCode).toBeNull();
  }, 120_000);

  it("with settings a stopped local stack left behind, says `npm start` is not running and exits 1 within seconds", async () => {
    const dataDir = await dirs.make();
    const dead = `http://127.0.0.1:${await freePort()}`;
    await writeFile(join(dataDir, "runner.env"), `LIBSQL_URL=${dead}\nLIBSQL_AUTH_TOKEN=x\nEDGE_URL=${dead}\nRUNNER_TOKEN=runner-main-test-token\n`, { mode: 0o600 });
    const stale = startRunnerProcess({ LIBSQL_URL: "", LIBSQL_AUTH_TOKEN: "", EDGE_URL: "", RUNNER_TOKEN: "", WORK_DIR: "", METRICS_PORT: "", DATA_DIR: dataDir });
    try {
      const { code } = await stale.exited;
      expect(code).toBe(1);
      expect(stale.logs()).toContain("settings from the local stack");
      expect(stale.logs()).toContain("is `npm start` running?");
    } finally {
      await stale.destroy();
    }
  }, 60_000);

  it("exits 1 at once, naming WORK_DIR, when it cannot use its work directory (not retried as a database outage)", async () => {
    const blocked = join(await dirs.make(), "a-file");
    await writeFile(blocked, "WORK_DIR cannot be made under a file");
    const dead = `http://127.0.0.1:${await freePort()}`;
    const r = startRunnerProcess({ LIBSQL_URL: `${dead}/`, EDGE_URL: dead, RUNNER_TOKEN: "runner-main-test-token", WORK_DIR: join(blocked, "work"), METRICS_PORT: "" });
    try {
      const { code } = await r.exited;
      expect(code).toBe(1);
      expect(r.logs()).toContain(`cannot use WORK_DIR ${join(blocked, "work")}`);
      expect(r.logs()).not.toContain("cannot reach the database yet");
    } finally {
      await r.destroy();
    }
  }, 60_000);

  it("exits 1 naming WORK_DIR, with no stack, when its own directory there is a symbolic link, and leaves the link's target alone", async () => {
    const workDir = await dirs.make();
    const target = await dirs.make();
    await writeFile(join(target, "precious"), "keep me");
    await symlink(target, join(workDir, "runner-main-link"));
    const dead = `http://127.0.0.1:${await freePort()}`;
    const r = startRunnerProcess({ LIBSQL_URL: `${dead}/`, EDGE_URL: dead, RUNNER_TOKEN: "runner-main-test-token", RUNNER_ID: "main-link", WORK_DIR: workDir, METRICS_PORT: "" });
    try {
      const { code } = await r.exited;
      expect(code).toBe(1);
      expect(r.logs()).toContain(`cannot use WORK_DIR ${workDir}: the runner's directory ${join(workDir, "runner-main-link")} is a symbolic link`);
      expect(r.logs()).not.toMatch(/\n\s+at /);
      expect(await readdir(target)).toEqual(["precious"]);
    } finally {
      await r.destroy();
    }
  }, 60_000);
});
