import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEncodeArgs, probeMedia, spawnFfmpeg, verifyOutput } from "../../runner/ffmpeg";
import { createLogger } from "../../runner/log";
import { RunnerMetrics } from "../../runner/metrics";
import { deriveParams } from "../../runner/params";
import { ProcessRegistry } from "../../runner/processes";
import { makeClip } from "../helpers/clips";
import { isAlive, makeStubbornFfmpeg } from "../helpers/runner";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-processes-test-"));
});
const stubDirs: string[] = [];
afterAll(async () => {
  for (const d of [dir, ...stubDirs]) await rm(d, { recursive: true, force: true });
});

function registry(graceMs: number) {
  const lines: string[] = [];
  const metrics = new RunnerMetrics();
  const log = createLogger({ sink: (l) => lines.push(l) });
  return { reg: new ProcessRegistry({ graceMs, log, metrics }), lines, metrics };
}

async function longEncode(name: string) {
  const clip = await makeClip({ seconds: 60 });
  const media = await probeMedia("ffprobe", clip);
  const output = join(dir, name);
  const plan = buildEncodeArgs({ source: clip, output, params: deriveParams(11), media });
  let progressed!: () => void;
  const started = new Promise<void>((r) => (progressed = r));
  const proc = spawnFfmpeg("ffmpeg", plan.args, (ms) => ms > 0 && progressed());
  await started;
  return { proc, output };
}

describe("stop sequence", () => {
  it("stops a running encode with q alone, and FFmpeg finalises a playable file", async () => {
    const { reg, lines, metrics } = registry(2000);
    const { proc, output } = await longEncode("q.mp4");
    reg.register("v1", proc);
    const outcome = await reg.stop("v1", "cancel")!;
    expect(outcome.stage).toBe("q");
    expect(outcome.exit.code).toBe(0);
    expect(outcome.durationMs).toBeLessThan(2000);
    expect(reg.stopStage("v1")).toBe("q");
    expect(await isAlive(proc.pid)).toBe(false);
    expect(lines.filter((l) => l.includes("stop stage"))).toHaveLength(1);
    expect(metrics.stopStages.get({ stage: "q" })).toBe(1);
    // A q-stopped file is a valid, shorter MP4: which is exactly why "completed" is never decided by it.
    await expect(verifyOutput(output, 60_000)).rejects.toThrow(/incomplete/);
  });

  it("escalates to SIGTERM and then SIGKILL for a process that ignores both, sending each stage once", async () => {
    const stub = await makeStubbornFfmpeg();
    stubDirs.push(dirname(stub.path));
    const { reg, lines } = registry(300);
    // The stand-in prints its progress only after its traps are set: stopped earlier, its shell would die of the
    // SIGTERM and the test would see a stage the runner never needed.
    let trapsSet!: () => void;
    const ready = new Promise<void>((r) => (trapsSet = r));
    const proc = spawnFfmpeg(stub.path, ["-progress", "pipe:1", "-i", "x", "y.mp4"], () => trapsSet());
    reg.register("v2", proc);
    await ready;
    const t0 = performance.now();
    const outcome = await reg.stop("v2", "cancel")!;
    const elapsed = performance.now() - t0;
    expect(outcome.stage).toBe("sigkill");
    expect(outcome.exit.signal).toBe("SIGKILL");
    expect(elapsed).toBeGreaterThanOrEqual(600);
    const stages = lines.filter((l) => l.includes("stop stage")).map((l) => /stop stage (\w+)/.exec(l)![1]);
    expect(stages).toEqual(["q", "sigterm", "sigkill"]);
    expect((await readFile(stub.signalsLog, "utf8")).trim().split("\n")).toEqual(["TERM"]);
    expect(await isAlive(proc.pid)).toBe(false);
  });

  it("sends nothing to an FFmpeg that already exited on its own, so its output counts as completed", async () => {
    const { reg, lines } = registry(2000);
    const clip = await makeClip({ seconds: 1 });
    const media = await probeMedia("ffprobe", clip);
    const output = join(dir, "done.mp4");
    const plan = buildEncodeArgs({ source: clip, output, params: deriveParams(5), media });
    const proc = spawnFfmpeg("ffmpeg", plan.args);
    reg.register("v3", proc);
    await proc.exited;
    const outcome = await reg.stop("v3", "cancel")!;
    expect(outcome.stage).toBeNull();
    expect(reg.stopStage("v3")).toBeNull();
    expect(lines.some((l) => l.includes("stop stage"))).toBe(false);
    await verifyOutput(output, plan.expectedDurationMs);
  });

  it("runs one sequence however many times a stop is requested", async () => {
    const { reg, metrics } = registry(2000);
    const { proc } = await longEncode("twice.mp4");
    reg.register("v4", proc);
    const [a, b] = await Promise.all([reg.stop("v4", "cancel"), reg.stop("v4", "shutdown")]);
    expect(a).toBe(b);
    expect(metrics.stopStages.get({ stage: "q" })).toBe(1);
  });

  it("kills every registered process group at once on a second signal", async () => {
    const stub = await makeStubbornFfmpeg();
    stubDirs.push(dirname(stub.path));
    const { reg } = registry(5000);
    const procs = [1, 2].map(() => spawnFfmpeg(stub.path, ["-progress", "pipe:1", "x.mp4"]));
    procs.forEach((p, i) => reg.register(`k${i}`, p));
    await new Promise((r) => setTimeout(r, 100));
    reg.killAll();
    const exits = await Promise.all(procs.map((p) => p.exited));
    expect(exits.map((e) => e.signal)).toEqual(["SIGKILL", "SIGKILL"]);
  });
});
