import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { liveGroupMembers, ROOT } from "../../scripts/stack";
import { freePort } from "../helpers/ports";

function groupAlive(pgid: number): boolean {
  return liveGroupMembers(pgid).length > 0;
}

describe("npm start launcher", () => {
  let dataDir: string;
  let launcher: ChildProcess;
  let output = "";
  let edgeUrl: string;
  let pids: Record<string, number> = {};

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "vr-stack-"));
    const [port, libsqlPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    edgeUrl = `http://127.0.0.1:${port}`;
    // The same entry `npm start` runs, on free ports and a throwaway data dir.
    launcher = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), LIBSQL_PORT: String(libsqlPort), METRICS_PORT: String(metricsPort), DATA_DIR: dataDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines = createInterface({ input: launcher.stdout! });
    launcher.stderr!.on("data", (d) => (output += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stack not ready in 90 s:\n${output}`)), 90_000);
      launcher.once("exit", (code) => reject(new Error(`launcher exited ${code}:\n${output}`)));
      lines.on("line", (line) => {
        output += line + "\n";
        const m = /stack pids: (\{.*\})/.exec(line);
        if (m) pids = JSON.parse(m[1]!);
        if (line.includes("Press Ctrl-C to stop")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }, 120_000);

  afterAll(async () => {
    if (launcher.exitCode === null) launcher.kill("SIGKILL");
    for (const pid of Object.values(pids)) if (groupAlive(pid)) try { process.kill(-pid, "SIGKILL"); } catch {}
    await rm(dataDir, { recursive: true, force: true });
  });

  it("prints the URL and a generated admin login on the first run", () => {
    expect(output).toContain(`Video Refresher is running at ${edgeUrl}`);
    expect(output).toMatch(/Admin account \(shown once, stored hashed\): admin@example\.com \/ \S{20,}/);
    expect(Object.keys(pids).sort()).toEqual(["db", "edge", "runner"]);
  });

  it("answers /api/health through wrangler dev with a live database", async () => {
    const res = await fetch(`${edgeUrl}/api/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, db: "ok" });
  });

  it("keeps the runner process alive and connected", async () => {
    await new Promise((r) => setTimeout(r, 1500));
    expect(groupAlive(pids.runner!)).toBe(true);
  });

  it("lets `npm run runner` join the running stack with no settings of its own, and stop cleanly", async () => {
    const metricsPort = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, METRICS_PORT: String(metricsPort) };
    for (const k of ["LIBSQL_URL", "LIBSQL_AUTH_TOKEN", "EDGE_URL", "RUNNER_TOKEN", "WORK_DIR"]) delete env[k];
    // What `npm run runner` runs.
    const extra = spawn(process.execPath, ["--import", "tsx", "runner/main.ts"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    extra.stdout!.on("data", (d) => (log += d));
    extra.stderr!.on("data", (d) => (log += d));
    const exited = new Promise<number | null>((r) => extra.once("exit", (code) => r(code)));
    try {
      // Healthy means: the database answered, and the edge took its token and its clock.
      await expect
        .poll(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => null))?.status, { timeout: 60_000, interval: 250 })
        .toBe(200);
      expect(log).toContain("settings from the local stack");
      extra.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (extra.exitCode === null) extra.kill("SIGKILL");
    }
  }, 90_000);

  // One scenario, because both steps end the stack this file shares.
  it("answers 503 quickly once the libSQL server is gone, then stops every child on SIGINT leaving no process", async () => {
    process.kill(-pids.db!, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (groupAlive(pids.db!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const res = await fetch(`${edgeUrl}/api/health`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, db: "error" });
    expect(Date.now() - started).toBeLessThan(9_000);

    const exited = new Promise<number | null>((r) => launcher.once("exit", (code) => r(code)));
    launcher.kill("SIGINT");
    expect(await exited).toBe(0);
    for (const [name, pid] of Object.entries(pids)) expect(groupAlive(pid), `${name} group alive`).toBe(false);
  }, 40_000);
});
