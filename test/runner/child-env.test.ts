import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probeMedia, spawnFfmpeg } from "../../runner/ffmpeg";
import { ffmpegRun } from "../../runner/samples";

let dir: string;
let standIn: string;
const saved = { db: process.env.LIBSQL_AUTH_TOKEN, runner: process.env.RUNNER_TOKEN };
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-child-env-"));
  // A stand-in FFmpeg/ffprobe that writes the environment it was given to the file named by its last argument.
  standIn = join(dir, "stand-in.sh");
  await writeFile(standIn, '#!/bin/sh\nfor last; do :; done\nenv > "$last"\n');
  await chmod(standIn, 0o755);
  process.env.LIBSQL_AUTH_TOKEN = "db-secret-for-the-test";
  process.env.RUNNER_TOKEN = "runner-secret-for-the-test";
});
afterAll(async () => {
  for (const [name, value] of [["LIBSQL_AUTH_TOKEN", saved.db], ["RUNNER_TOKEN", saved.runner]] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await rm(dir, { recursive: true, force: true });
});

describe("FFmpeg and ffprobe started by the runner", () => {
  it("see neither the database credential nor the runner token (they parse untrusted uploads), but do get PATH", async () => {
    const files = { encode: join(dir, "encode.env"), probe: join(dir, "probe.env"), measure: join(dir, "measure.env") };
    await spawnFfmpeg(standIn, [files.encode]).exited;
    await probeMedia(standIn, files.probe).catch(() => {});
    await ffmpegRun(standIn, [files.measure]).catch(() => {});
    for (const file of Object.values(files)) {
      const env = await readFile(file, "utf8");
      expect(env).toMatch(/^PATH=/m);
      expect(env).not.toContain("db-secret-for-the-test");
      expect(env).not.toContain("runner-secret-for-the-test");
    }
  });
});
