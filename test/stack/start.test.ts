import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
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

/** Live (not zombie) processes whose environment carries `DATA_DIR=<dataDir>`: everything a launcher started. */
function processesOf(dataDir: string): number[] {
  const mark = Buffer.from(`\0DATA_DIR=${dataDir}\0`);
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z") continue;
      if (Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${name}/environ`)]).includes(mark)) found.push(Number(name));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

describe("npm start when its runner cannot start", () => {
  let dataDir: string;
  let launcher: ChildProcess;
  let stdout = "";
  let stderr = "";
  let ports: { edge: number; libsql: number };
  let exitCode: number | null | undefined;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "vr-stack-"));
    ports = { edge: await freePort(), libsql: await freePort() };
    launcher = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(ports.edge),
        LIBSQL_PORT: String(ports.libsql),
        METRICS_PORT: String(await freePort()),
        DATA_DIR: dataDir,
        // What a machine without FFmpeg looks like to the runner.
        FFMPEG_PATH: join(dataDir, "no-ffmpeg-here"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    launcher.stdout!.on("data", (d) => (stdout += d));
    launcher.stderr!.on("data", (d) => (stderr += d));
    // Bounded: the edge's start (the UI built twice) and then the runner's, which exits at once.
    exitCode = await new Promise<number | null | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 150_000);
      launcher.once("exit", (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }, 170_000);

  afterAll(async () => {
    if (launcher.exitCode === null && launcher.signalCode === null) {
      const exited = new Promise((r) => launcher.once("exit", r));
      launcher.kill("SIGINT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    }
    for (const pid of processesOf(dataDir)) try { process.kill(pid, "SIGKILL"); } catch {}
    await rm(dataDir, { recursive: true, force: true });
  }, 40_000);

  it("fails with the runner's own reason instead of saying the stack is running", () => {
    expect(exitCode, `the launcher did not exit\n${stdout}\n${stderr}`).toBe(1);
    expect(stdout).not.toContain("Video Refresher is running");
    expect(stderr).toMatch(/npm start failed: runner exited with code 1 before it was ready/);
    expect(stderr).toContain(`FFMPEG_PATH: "${join(dataDir, "no-ffmpeg-here")}" is not an executable`);
  });

  it("leaves nothing running: no process of the stack, no port held", async () => {
    expect(processesOf(dataDir)).toEqual([]);
    for (const port of [ports.edge, ports.libsql]) {
      expect(await fetch(`http://127.0.0.1:${port}/`).then(() => "answered", () => "refused"), `port ${port}`).toBe("refused");
    }
  });
});
