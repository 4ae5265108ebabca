// `npm run bench:runner [encode|quality|db|overhead|stop]…` — prints figures; asserts nothing (targets are in the issue).
// Knobs: ENCODE_RUNS (2), OVERHEAD_ROUNDS (3), STOP_TRIALS (20).
// Real pieces: local libSQL server, `wrangler dev` (the edge), runner processes started like `npm run runner`,
// Debian FFmpeg on lavfi clips. Run it on a quiet machine: every figure is wall time.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { cancelJob } from "../edge/lib/cancel-job";
import { buildEncodeArgs, detectZoomScaler, probeMedia, spawnFfmpeg, type ZoomScaler } from "../runner/ffmpeg";
import { deriveParams, type EffectParams } from "../runner/params";
import { buildMeasureArgs, parseSummaries } from "../runner/quality";
import { buildSourceSampleArgs, encodeSampleChain, outputTimes, sampleKeyframes, sampleTimes } from "../runner/samples";
import { makeClip } from "../test/helpers/clips";
import { startEdgeStack, type EdgeStack } from "../test/helpers/edge-stack";
import { until } from "../test/helpers/until";
import { isAlive, startRunnerProcess, type RunnerProcess } from "../test/helpers/runner";
import { getJobRow, getVariationRows } from "../test/helpers/seed";

const run = promisify(execFile);
const wanted = new Set(process.argv.slice(2));
const want = (name: string) => wanted.size === 0 || wanted.has(name);
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

/**
 * Runs FFmpeg: wall time and CPU time (user + system, all threads, start-up included). CPU time is the cost figure
 * that survives other load on a shared machine; wall time is what a user waits.
 */
async function timedFfmpeg(args: string[]): Promise<{ wallMs: number; cpuMs: number; stderr: string }> {
  return timed("ffmpeg", ["-nostats", ...args]);
}

/**
 * Runs a program and measures its wall time and its whole CPU time, user + system, start-up included (bash's
 * `times` on its child). FFmpeg's own -benchmark leaves out the start-up and the opening of the inputs: about half
 * of what a short measurement run costs.
 */
async function timed(bin: string, args: string[]): Promise<{ wallMs: number; cpuMs: number; stderr: string }> {
  const t0 = performance.now();
  const script = 'f=$(mktemp); "$@" >/dev/null 2>"$f"; rc=$?; times; cat "$f" >&2; rm -f "$f"; exit $rc';
  const { stdout, stderr } = await run("bash", ["-c", script, "bash", bin, ...args], { maxBuffer: 64 * 1024 * 1024 });
  const wallMs = performance.now() - t0;
  // Two lines: the shell's own times, then its children's ("0m0.350s 0m0.280s").
  const children = stdout.trim().split("\n").pop() ?? "";
  const secs = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return { wallMs, cpuMs: secs.length === 2 ? (secs[0]! + secs[1]!) * 1000 : NaN, stderr };
}

/** SSIM ("All") of an encoded file against its source, frames paired in order from the start. */
async function ssim(file: string, source: string): Promise<number> {
  const { stderr } = await run("ffmpeg", [
    "-hide_banner", "-nostdin", "-i", file, "-i", source,
    "-lavfi", "[0:v]setpts=PTS-STARTPTS[a];[1:v]setpts=PTS-STARTPTS[b];[a][b]ssim", "-f", "null", "-",
  ], { maxBuffer: 64 * 1024 * 1024 });
  return Number(/All:([\d.]+)/.exec(stderr)![1]);
}

/** The seed system's exact recipe, with the same random draw mapped onto its rotation range (0.001–0.01 rad). */
function seedRecipeArgs(source: string, output: string, p: EffectParams): { args: string[]; angle: number } {
  const u = (p.zoom - 0.002) / 0.006;
  const angle = Number((0.001 + 0.009 * u).toFixed(5));
  const eq = `eq=brightness=${p.brightness}:contrast=${p.contrast}:saturation=${p.saturation}`;
  return {
    angle,
    args: [
      "-v", "error", "-nostdin", "-y", "-i", source,
      "-vf", `rotate=${angle}:fillcolor=black@0,${eq}`,
      "-r", "29.97", "-c:v", "libx264", "-b:v", "2000k", "-bufsize", "4000k", "-maxrate", "2500k",
      "-preset", "ultrafast", "-crf", "23", "-threads", "4", "-pix_fmt", "yuv420p", "-c:a", "aac",
      "-movflags", "+faststart", "-map_metadata", "-1", output,
    ],
  };
}

/** SSIM of a filter chain's output against its input over the first seconds, without encoding (recipe only). */
async function chainSsim(source: string, chain: string, seconds: number): Promise<number> {
  const { stderr } = await run("ffmpeg", [
    "-hide_banner", "-nostdin", "-t", String(seconds), "-i", source,
    "-lavfi", `[0:v]split[a][b];[a]${chain}[c];[c][b]ssim`, "-f", "null", "-",
  ], { maxBuffer: 64 * 1024 * 1024 });
  return Number(/All:([\d.]+)/.exec(stderr)![1]);
}

async function benchEncode(): Promise<void> {
  console.log("\n## Encode cost: seed recipe vs ours (30 s 1080×1920, same machine)");
  console.log("(SSIM: output frames paired with source frames by time; both recipes reach 29.97 fps with -r, dropping the same frames)");
  const source = await makeClip({ seconds: 30, width: 1080, height: 1920 });
  const media = await probeMedia("ffprobe", source);
  const dir = await mkdtemp(join(tmpdir(), "vr-bench-encode-"));
  // A seed whose draw sits mid-range: zoom 0.48 %, i.e. rotation ≈ 0.0052 rad for the seed recipe. The sweep
  // below covers the rest of the range.
  const seed = 20260214;
  const params = deriveParams(seed);
  const ours = buildEncodeArgs({ scaler, source, output: join(dir, "ours.mp4"), params, media });
  const legacy = seedRecipeArgs(source, join(dir, "seed.mp4"), params);
  const oursArgs = ours.args.filter((a, i, all) => !(a === "-progress" || all[i - 1] === "-progress"));
  // A bare transcode: the same x264/AAC settings, frame rate and container, no filters — the floor of any recipe.
  const bareArgs = oursArgs
    .filter((a, i, all) => !(a === "-vf" || all[i - 1] === "-vf"))
    .map((a) => (a === join(dir, "ours.mp4") ? join(dir, "bare.mp4") : a));
  // Alternate the recipes and keep each one's best run: load from other processes hits both sides. Ours and the
  // bare transcode also run back to back five times: this host's speed drifts by ±15 % within minutes, so the
  // median of the pairs' ratios is the steadier figure (the seed recipe, 3× slower, runs twice).
  const runs = Number(process.env.ENCODE_RUNS ?? 5);
  const seedRuns: { wallMs: number; cpuMs: number }[] = [];
  const oursRuns: { wallMs: number; cpuMs: number }[] = [];
  const bareRuns: { wallMs: number; cpuMs: number }[] = [];
  for (let i = 0; i < runs; i++) {
    if (i < 2) seedRuns.push(await timedFfmpeg(legacy.args));
    oursRuns.push(await timedFfmpeg(oursArgs));
    bareRuns.push(await timedFfmpeg(bareArgs));
  }
  const median = (xs: number[]) => percentile(xs, 50);
  const paired = (key: "wallMs" | "cpuMs") => median(oursRuns.map((r, i) => r[key] / bareRuns[i]![key]));
  const best = (rs: { wallMs: number; cpuMs: number }[]) => ({
    wallMs: Math.min(...rs.map((r) => r.wallMs)),
    cpuMs: Math.min(...rs.map((r) => r.cpuMs)),
  });
  const [seedBest, oursBest, bareBest] = [best(seedRuns), best(oursRuns), best(bareRuns)];
  const [seedSsim, oursSsim] = [await ssim(join(dir, "seed.mp4"), source), await ssim(join(dir, "ours.mp4"), source)];
  const show = (r: { wallMs: number; cpuMs: number }) => `wall ${fmt(r.wallMs)}, CPU ${fmt(r.cpuMs)}`;
  console.log(`(best of ${seedRuns.length} seed-recipe runs and ${runs} of ours and bare, alternating; all runs: seed ${seedRuns.map((r) => fmt(r.wallMs)).join(", ")}; ours ${oursRuns.map((r) => fmt(r.wallMs)).join(", ")})`);
  console.log(`seed recipe  rotate=${legacy.angle} rad + eq:           ${show(seedBest)}   SSIM vs source ${seedSsim.toFixed(4)}`);
  console.log(`our recipe   zoom ${(params.zoom * 100).toFixed(2)} % + crop offset + eq: ${show(oursBest)}   SSIM vs source ${oursSsim.toFixed(4)}`);
  console.log(
    `ratio seed/ours = ${(seedBest.wallMs / oursBest.wallMs).toFixed(2)} (wall time, best runs; target ≥ 2.5); ` +
      `CPU-time ratio ${(seedBest.cpuMs / oursBest.cpuMs).toFixed(2)}; SSIM ours ${oursSsim >= seedSsim ? "≥" : "<"} seed`,
  );
  const bareSsim = await ssim(join(dir, "bare.mp4"), source);
  console.log(`bare transcode (same x264/AAC settings, no filters): ${show(bareBest)}   SSIM vs source ${bareSsim.toFixed(4)}`);
  console.log(
    `ratio ours/bare transcode = ${(oursBest.wallMs / bareBest.wallMs).toFixed(2)} (wall time, best runs; target ≤ 1.15); ` +
      `CPU-time ratio ${(oursBest.cpuMs / bareBest.cpuMs).toFixed(2)}`,
  );
  console.log(
    `ratio ours/bare transcode, median of ${runs} back-to-back pairs = ${paired("wallMs").toFixed(2)} wall · ${paired("cpuMs").toFixed(2)} CPU ` +
      `(all pairs, wall: ${oursRuns.map((r, i) => (r.wallMs / bareRuns[i]!.wallMs).toFixed(2)).join(", ")})`,
  );

  // Subtlety over the whole parameter range, not just one seed: the same draws mapped onto both recipes.
  const seeds = [11, 222, 3333, 44444, 555555, 6666666, 7777, 88, 999, 1010];
  let sumSeed = 0;
  let sumOurs = 0;
  const lines: string[] = [];
  for (const s of seeds) {
    const p = deriveParams(s);
    const g = buildEncodeArgs({ scaler, source, output: "x", params: p, media });
    const vf = g.args[g.args.indexOf("-vf") + 1]!;
    const sa = seedRecipeArgs(source, "x", p);
    const a = await chainSsim(source, `rotate=${sa.angle}:fillcolor=black@0,eq=brightness=${p.brightness}:contrast=${p.contrast}:saturation=${p.saturation}`, 3);
    const b = await chainSsim(source, vf, 3);
    sumSeed += a;
    sumOurs += b;
    lines.push(`  seed ${String(s).padStart(8)}: rotate ${sa.angle.toFixed(4)} → ${a.toFixed(4)} | zoom ${(p.zoom * 100).toFixed(2)} % → ${b.toFixed(4)}`);
  }
  console.log(`filter-only SSIM over ${seeds.length} seeds (first 3 s, before encoding):`);
  console.log(lines.join("\n"));
  console.log(`  mean: seed recipe ${(sumSeed / seeds.length).toFixed(4)}, ours ${(sumOurs / seeds.length).toFixed(4)}`);
  await rm(dir, { recursive: true, force: true });
}

async function scrape(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) ([\d.e+-]+)$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

async function metricsPort(r: RunnerProcess): Promise<number> {
  return Number(/metrics listening port=(\d+)/.exec(await r.waitForLog(/metrics listening/))![1]);
}

async function benchDb(stack: EdgeStack): Promise<void> {
  console.log("\n## Database round trips (default POLL_MS=1000, WATCH_MS=1000)");
  const r = startRunnerProcess(stack.runnerEnv({ POLL_MS: "1000", WATCH_MS: "1000", LEASE_MS: "30000", STOP_GRACE_MS: "2000", CONCURRENCY: "2", METRICS_PORT: "0", WORK_DIR: await stack.workDir() }));
  try {
    const port = await metricsPort(r);
    await r.waitForLog(/runner started/);
    await new Promise((res) => setTimeout(res, 1500));
    const a = await scrape(port);
    const idleMs = 10_000;
    await new Promise((res) => setTimeout(res, idleMs));
    const b = await scrape(port);
    const rt = b["runner_db_round_trips_total"]! - a["runner_db_round_trips_total"]!;
    const ticks = b["runner_ticks_total"]! - a["runner_ticks_total"]!;
    console.log(`idle:  ${rt} round trips in ${fmt(idleMs)} over ${ticks} polls → ${(rt / ticks).toFixed(2)} per idle poll, ${(rt / (idleMs / 1000)).toFixed(2)}/s`);

    // Big enough that both encodes outlast the 8 s window on a fast machine (a small clip finished inside it).
    const job = await stack.user.createJob([await makeClip({ seconds: 60, width: 1080, height: 1920 })], 2);
    await until("both variations encoding", async () => {
      const rows = await getVariationRows(stack.db, job.id);
      return rows.length === 2 && rows.every((v) => v.status === "running" && v.progress > 0);
    }, 60_000, 100);
    const c = await scrape(port);
    const t0 = performance.now();
    await new Promise((res) => setTimeout(res, 8000));
    const d = await scrape(port);
    const busyMs = performance.now() - t0;
    const stillBusy = (await getVariationRows(stack.db, job.id)).every((v) => v.status === "running");
    const brt = d["runner_db_round_trips_total"]! - c["runner_db_round_trips_total"]!;
    console.log(
      `busy:  ${brt} round trips in ${fmt(busyMs)} with both slots encoding → ${(brt / (busyMs / 1000)).toFixed(2)}/s (target ≤ 1)${stillBusy ? "" : " [a variation finished inside the window]"}`,
    );
    // The job may have completed meanwhile on a fast machine: nothing left to cancel is fine here.
    await cancelJob(stack.db, { jobId: job.id, viewer: { id: stack.user.userId, email: stack.user.email, role: "user" } }, { now: Date.now(), waitMs: 10_000 }).catch(
      (err: unknown) => {
        if ((err as { code?: string }).code !== "not_cancellable") throw err;
      },
    );
  } finally {
    r.child.kill("SIGTERM");
    await r.exited;
  }
}

/** Busy CPU seconds of the whole machine so far (all cores: user, nice, system, irq, softirq), from /proc/stat; null elsewhere. */
function machineCpu(): number | null {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) / 100; // USER_HZ
  } catch {
    return null;
  }
}

/** CPU seconds of a process (self) and of its reaped children, from /proc (Linux); null elsewhere. */
function procCpu(pid: number | "self"): { self: number; children: number } | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const hz = 100; // USER_HZ on Linux
    return { self: (Number(f[11]) + Number(f[12])) / hz, children: (Number(f[13]) + Number(f[14])) / hz };
  } catch {
    return null;
  }
}

async function benchOverhead(stack: EdgeStack, rounds = Number(process.env.OVERHEAD_ROUNDS ?? 3)): Promise<void> {
  const concurrency = 2;
  console.log(`\n## Job overhead: a 6-variation job vs the same FFmpeg commands run bare (concurrency ${concurrency})`);
  console.log(`(alternating job, bare, job, bare…: other load on the machine hits both sides; best of ${rounds} compared)`);
  const clip = await makeClip({ seconds: 20, width: 720, height: 1280 });
  const media = await probeMedia("ffprobe", clip);
  const r = startRunnerProcess(stack.runnerEnv({ POLL_MS: "1000", WATCH_MS: "1000", LEASE_MS: "30000", STOP_GRACE_MS: "2000", CONCURRENCY: String(concurrency), WORK_DIR: await stack.workDir() }));
  const jobs: { processing: number; fromCreate: number }[] = [];
  const bares: number[] = [];
  const measuredBares: number[] = [];
  /**
   * The same FFmpeg work with the measurement issue 11 added, still with no runner, edge or database: the source's
   * samples (once, by a decode of their own: the runner picks them out of its first encode, a little cheaper), then
   * per variation the encode with the sample keyframes and its measurement, in a pool of `concurrency`.
   */
  const bareWithMeasurement = async (seeds: number[], dir: string): Promise<number> => {
    const times = sampleTimes(media.durationMs);
    const sampleFile = join(dir, "src.samples.nut");
    const work = seeds.map((seed, i) => {
      const params = deriveParams(seed);
      const output = join(dir, `m${i}.mp4`);
      return { params, output, i, plan: buildEncodeArgs({ scaler, source: clip, output, params, media, keyframes: sampleKeyframes(times, params.speed) }) };
    });
    const t0 = performance.now();
    await timedFfmpeg(buildSourceSampleArgs(clip, times, media.fps, sampleFile));
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let w = work.shift(); w; w = work.shift()) {
          await spawnFfmpeg("ffmpeg", w.plan.args).exited;
          const { params, output, i, plan } = w;
          const thumbnail = join(dir, `m${i}.jpg`);
          await timed("ffmpeg", buildMeasureArgs({ sourceSamples: sampleFile, output, thumbnail, outputTimesS: outputTimes(times, params.speed), params, geometry: plan.geometry }));
        }
      }),
    );
    return performance.now() - t0;
  };
  try {
    await r.waitForLog(/runner started/);
    for (let round = 0; round < rounds; round++) {
      const t0 = Date.now();
      const cpu0 = procCpu(r.pid);
      const machine0 = machineCpu();
      const job = await stack.user.createJob([clip], 6);
      // Both ratios use the job's own recorded completion time (this machine's clock, like t0), so a slow poll here
      // costs no precision but keeps this process (which also hosts the libSQL server) from competing with the
      // encodes. (Before, POST → completed was read at the poll that saw it: up to a whole second late.)
      const row = await until("the job to complete", async () => {
        const j = await getJobRow(stack.db, job.id);
        return j?.status === "completed" ? j : null;
      }, 600_000, 1000);
      const cpu1 = procCpu(r.pid);
      const machine1 = machineCpu();
      jobs.push({ processing: row.completedAt! - row.startedAt!, fromCreate: row.completedAt! - t0 });

      const dir = await mkdtemp(join(tmpdir(), "vr-bench-bare-"));
      const rows = await getVariationRows(stack.db, job.id);
      const plans = rows.map((v, i) =>
        buildEncodeArgs({ scaler, source: clip, output: join(dir, `${i}.mp4`), params: deriveParams(v.seed), media }),
      );
      const b0 = performance.now();
      const bareCpu0 = procCpu("self");
      const queue = [...plans];
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          for (let p = queue.shift(); p; p = queue.shift()) await spawnFfmpeg("ffmpeg", p.args).exited;
        }),
      );
      bares.push(performance.now() - b0);
      const bareCpu1 = procCpu("self");
      measuredBares.push(await bareWithMeasurement(rows.map((v) => v.seed), dir));
      await rm(dir, { recursive: true, force: true });
      // The rest of the machine's CPU while the job ran is the local stack: workerd serving the source and taking
      // the uploads, the libSQL server (in this process), wrangler. In production those run elsewhere.
      const rest =
        cpu0 && cpu1 && machine0 !== null && machine1 !== null
          ? `, rest of the machine (local edge, libSQL, bench) ${(machine1 - machine0 - (cpu1.children - cpu0.children) - (cpu1.self - cpu0.self)).toFixed(1)} s`
          : "";
      const cpuNote =
        cpu0 && cpu1 && bareCpu0 && bareCpu1
          ? ` | CPU: runner's FFmpeg/ffprobe ${(cpu1.children - cpu0.children).toFixed(1)} s + runner itself ${(cpu1.self - cpu0.self).toFixed(1)} s${rest}; bare FFmpeg ${(bareCpu1.children - bareCpu0.children).toFixed(1)} s`
          : "";
      console.log(
        `round ${round + 1}: job ${fmt(jobs[round]!.processing)} (from POST ${fmt(jobs[round]!.fromCreate)}), bare ${fmt(bares[round]!)}, ` +
          `bare with the measurement ${fmt(measuredBares[round]!)}${cpuNote}`,
      );
    }
    const bare = Math.min(...bares);
    const processing = Math.min(...jobs.map((j) => j.processing));
    const fromCreate = Math.min(...jobs.map((j) => j.fromCreate));
    console.log(`bare FFmpeg (same args, pool of ${concurrency}), best:        ${fmt(bare)}`);
    console.log(`job: first claim → completed (started_at→completed_at), best: ${fmt(processing)} → ratio ${(processing / bare).toFixed(3)} (target ≤ 1.05)`);
    console.log(`job: POST /api/jobs → completed (incl. upload + up to POLL_MS queue wait), best: ${fmt(fromCreate)} → ratio ${(fromCreate / bare).toFixed(3)}`);
    const measuredBare = Math.min(...measuredBares);
    console.log(
      `bare FFmpeg doing the measurement too (samples once; encode with sample keyframes + measure, pool of ${concurrency}), best: ${fmt(measuredBare)} → ` +
        `job ratio ${(processing / measuredBare).toFixed(3)}, POST → completed ratio ${(fromCreate / measuredBare).toFixed(3)}`,
    );
    // Where the runner's time went, per variation (from its "variation completed" log lines).
    const sums: Record<string, number[]> = {};
    for (const m of r.logs().matchAll(/variation completed .*/g)) {
      for (const [, k, v] of m[0].matchAll(/(\w+)_ms=(\d+)/g)) (sums[k!] ??= []).push(Number(v));
    }
    console.log(
      "per variation (mean ms): " +
        Object.entries(sums).map(([k, v]) => `${k} ${Math.round(v.reduce((a, b) => a + b, 0) / v.length)}`).join(", "),
    );
  } finally {
    r.child.kill("SIGTERM");
    await r.exited;
  }
}

async function benchStop(stack: EdgeStack, trials: number): Promise<void> {
  console.log(`\n## Stop latency: cancel written → last FFmpeg of the job exited (${trials} trials, defaults: WATCH_MS=1000, STOP_GRACE_MS=2000)`);
  const clip = await makeClip({ seconds: 60 });
  const r = startRunnerProcess(stack.runnerEnv({ POLL_MS: "1000", WATCH_MS: "1000", LEASE_MS: "30000", STOP_GRACE_MS: "2000", CONCURRENCY: "2", WORK_DIR: await stack.workDir() }));
  const viewer = { id: stack.user.userId, email: stack.user.email, role: "user" as const };
  const latencies: number[] = [];
  const stages: Record<string, number> = {};
  try {
    await r.waitForLog(/runner started/);
    for (let i = 0; i < trials; i++) {
      const known = new Set(r.ffmpegPids());
      const job = await stack.user.createJob([clip], 2);
      const pids = await until("both FFmpeg processes", async () => {
        const fresh = r.ffmpegPids().filter((p) => !known.has(p));
        return fresh.length === 2 ? fresh : null;
      }, 60_000, 20);
      // Land the cancel at a random point of the watch period, as a user would.
      await new Promise((res) => setTimeout(res, 300 + Math.random() * 1000));
      const t0 = performance.now();
      await cancelJob(stack.db, { jobId: job.id, viewer }, { now: Date.now(), waitMs: 0 });
      while ((await Promise.all(pids.map(isAlive))).some(Boolean)) await new Promise((res) => setTimeout(res, 5));
      latencies.push(performance.now() - t0);
      await until("the job to be cancelled", async () => (await getJobRow(stack.db, job.id))?.status === "cancelled", 30_000, 50);
      for (const v of await getVariationRows(stack.db, job.id)) stages[v.stopStage ?? "none"] = (stages[v.stopStage ?? "none"] ?? 0) + 1;
    }
  } finally {
    r.child.kill("SIGTERM");
    await r.exited;
  }
  const p50 = percentile(latencies, 50);
  const p95 = percentile(latencies, 95);
  console.log(`p50 ${fmt(p50)}  p95 ${fmt(p95)}  max ${fmt(Math.max(...latencies))}  (target p95 ≤ 1.20 s)`);
  console.log(`stop stages used: ${JSON.stringify(stages)}`);
}

/**
 * What the quality measurement (runner/quality.ts) costs next to the encode it measures: the same FFmpeg argument
 * lists the runner builds, timed with their whole CPU (`timed`). Per source once: the source's samples (picked out of
 * the first encode's decode; seeking for them is the fallback, timed too); per variation: the measurement. The encode runs with the sample keyframes, as in the runner (its cost is shown
 * against the encode without them).
 */
async function benchQuality(): Promise<void> {
  const lavfi = await makeClip({ seconds: 30, width: 1080, height: 1920 });
  await benchQualityOf("x264's default GOP of 250 frames: a worst case", lavfi);
  // Phone footage has a keyframe every 1–2 s: every sample then sits on one.
  const dir = await mkdtemp(join(tmpdir(), "vr-bench-gop-"));
  const phoneLike = join(dir, "gop60.mp4");
  await run("ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", lavfi, "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-c:a", "copy", phoneLike]);
  await benchQualityOf("a keyframe every 2 s, like phone footage", phoneLike);
  await rm(dir, { recursive: true, force: true });
}

async function benchQualityOf(label: string, source: string): Promise<void> {
  console.log(`\n## Quality measurement cost (30 s 1080×1920, ${label}; 5 variations of one source, default effects)`);
  const media = await probeMedia("ffprobe", source);
  const dir = await mkdtemp(join(tmpdir(), "vr-bench-quality-"));
  const times = sampleTimes(media.durationMs);
  const samples = join(dir, "src.samples.nut");
  const sourceCost = await timedFfmpeg(buildSourceSampleArgs(source, times, media.fps, samples));
  const strip = (args: string[]) => args.filter((a, i, all) => !(a === "-progress" || all[i - 1] === "-progress"));
  const rows: { encode: { wallMs: number; cpuMs: number }; plain: { wallMs: number; cpuMs: number }; measure: { wallMs: number; cpuMs: number }; ssim: number; psnr: number }[] = [];
  for (const seed of [101, 202, 303, 404, 505]) {
    const params = deriveParams(seed);
    const output = join(dir, `v${seed}.mp4`);
    const plan = buildEncodeArgs({ scaler, source, output, params, media });
    const plain = await timedFfmpeg(strip(plan.args));
    const encode = await timedFfmpeg(strip(buildEncodeArgs({ scaler, source, output, params, media, keyframes: sampleKeyframes(times, params.speed) }).args));
    const args = buildMeasureArgs({
      sourceSamples: samples,
      output,
      thumbnail: join(dir, `v${seed}.jpg`),
      outputTimesS: outputTimes(times, params.speed),
      params,
      geometry: plan.geometry,
    });
    const measure = await timed("ffmpeg", args);
    rows.push({ encode, plain, measure, ...parseSummaries(measure.stderr) });
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const enc = { wallMs: mean(rows.map((r) => r.encode.wallMs)), cpuMs: mean(rows.map((r) => r.encode.cpuMs)) };
  const plainEnc = { wallMs: mean(rows.map((r) => r.plain.wallMs)), cpuMs: mean(rows.map((r) => r.plain.cpuMs)) };
  const meas = { wallMs: mean(rows.map((r) => r.measure.wallMs)), cpuMs: mean(rows.map((r) => r.measure.cpuMs)) };
  const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(1)} %`;
  console.log(`sample times ${times.join(", ")} s`);
  console.log(`source samples by a decode of their own (the fallback when no encode left them): wall ${fmt(sourceCost.wallMs)}, CPU ${fmt(sourceCost.cpuMs)}`);
  console.log(`encode (mean of 5): wall ${fmt(enc.wallMs)}, CPU ${fmt(enc.cpuMs)}; without the sample keyframes wall ${fmt(plainEnc.wallMs)}, CPU ${fmt(plainEnc.cpuMs)} (keyframes cost ${pct(enc.cpuMs - plainEnc.cpuMs, plainEnc.cpuMs)} CPU)`);
  console.log(`measurement per variation (mean of 5): wall ${fmt(meas.wallMs)}, CPU ${fmt(meas.cpuMs)} = ${pct(meas.wallMs, enc.wallMs)} of the encode (wall), ${pct(meas.cpuMs, enc.cpuMs)} (CPU)`);
  console.log(
    `with the samples made by the fallback: 1st variation ${pct(meas.wallMs + sourceCost.wallMs, enc.wallMs)} (wall); ` +
      `over the 5 variations ${pct(5 * meas.wallMs + sourceCost.wallMs, 5 * enc.wallMs)} (wall), ${pct(5 * meas.cpuMs + sourceCost.cpuMs, 5 * enc.cpuMs)} (CPU)`,
  );
  // What the runner does: the source's first encode on a runner picks the samples out of its own decode
  // (runner/work.ts); the same encode without that second output right before, so both see the same machine.
  await rm(samples, { force: true });
  const first = (extra: Partial<Parameters<typeof buildEncodeArgs>[0]>) =>
    strip(buildEncodeArgs({ scaler, source, output: join(dir, "first.mp4"), params: deriveParams(101), media, keyframes: sampleKeyframes(times, 1), ...extra }).args);
  // Five pairs, each side right after the other, and the median of the pairs' differences: the machine's speed
  // drifts by more than the difference measured, but alike for the two runs of a pair.
  const runs: { alone: { wallMs: number; cpuMs: number }; withSamples: { wallMs: number; cpuMs: number } }[] = [];
  for (let i = 0; i < 5; i++) {
    // Which side runs first alternates: a drift within a pair favours neither.
    const plain = () => timedFfmpeg(first({}));
    const sampled = () => timedFfmpeg(first({ samples: { chain: encodeSampleChain(times, media.fps), file: samples } }));
    if (i % 2 === 0) {
      const a = await plain();
      runs.push({ alone: a, withSamples: await sampled() });
    } else {
      const w = await sampled();
      runs.push({ withSamples: w, alone: await plain() });
    }
  }
  const median = (xs: number[]) => percentile(xs, 50);
  const alone = { wallMs: median(runs.map((r) => r.alone.wallMs)), cpuMs: median(runs.map((r) => r.alone.cpuMs)) };
  const withSamples = { wallMs: median(runs.map((r) => r.withSamples.wallMs)), cpuMs: median(runs.map((r) => r.withSamples.cpuMs)) };
  const extra = { wallMs: median(runs.map((r) => r.withSamples.wallMs - r.alone.wallMs)), cpuMs: median(runs.map((r) => r.withSamples.cpuMs - r.alone.cpuMs)) };
  console.log(
    `1st variation, samples picked out of its encode (as the runner does; medians of 5 pairs): encode wall ${fmt(withSamples.wallMs)} ` +
      `(CPU ${fmt(withSamples.cpuMs)}) vs the same encode alone ${fmt(alone.wallMs)} (CPU ${fmt(alone.cpuMs)}), difference ${fmt(extra.wallMs)} wall, ${fmt(extra.cpuMs)} CPU; with its measurement ` +
      `${pct(extra.wallMs + meas.wallMs, alone.wallMs)} (wall), ${pct(extra.cpuMs + meas.cpuMs, alone.cpuMs)} (CPU); ` +
      `over the 5 variations ${pct(extra.wallMs + 5 * meas.wallMs, 5 * alone.wallMs)} (wall), ${pct(extra.cpuMs + 5 * meas.cpuMs, 5 * alone.cpuMs)} (CPU); target ≤ 15 %`,
  );
  console.log(`figures: SSIM ${rows.map((r) => r.ssim.toFixed(4)).join(", ")}; PSNR ${rows.map((r) => r.psnr.toFixed(1)).join(", ")} dB`);
  await rm(dir, { recursive: true, force: true });
}

/** The runner's choice for this FFmpeg (runner/ffmpeg.ts detectZoomScaler), so bare runs encode what a job does. */
let scaler: ZoomScaler = "scale";

async function main(): Promise<void> {
  console.log(`# bench:runner — ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  console.log((await run("ffmpeg", ["-version"])).stdout.split("\n")[0]);
  scaler = await detectZoomScaler("ffmpeg");
  console.log(`zoom scaled back with ${scaler} (as the runner does with this FFmpeg)`);
  if (want("encode")) await benchEncode();
  if (want("quality")) await benchQuality();
  if (!["db", "overhead", "stop"].some(want)) return;
  const stack = await startEdgeStack("bench_runner");
  try {
    if (want("db")) await benchDb(stack);
    if (want("overhead")) await benchOverhead(stack);
    if (want("stop")) await benchStop(stack, Number(process.env.STOP_TRIALS ?? 20));
  } finally {
    await stack.close();
  }
  console.log(`\nload at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
