// `npm run bench`: whole-system figures in one table (stdout); progress goes to stderr. Figures, not asserts.
// Encode cost/SSIM and job overhead come from `npm run bench:runner encode quality overhead` (run as a child process and
// read from its output: that script exports nothing); everything else is measured here on the real local stack.
import { execFile, spawn } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { promisify } from "node:util";
import { benchClaims, benchRunnerLoad, benchStopLatency, benchWorkerdMemory, log, percentile, startBenchStack } from "./system";
import { benchWebhookSweep, IDLE_WEBHOOKS } from "./webhooks";

const run = promisify(execFile);
const STOP_TRIALS = Number(process.env.STOP_TRIALS ?? 20);
const QUEUED_TRIALS = Number(process.env.QUEUED_TRIALS ?? 20);
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

interface Row {
  measure: string;
  value: string;
  target: string;
}
const rows: Row[] = [];
const add = (measure: string, value: string, target = "") => rows.push({ measure, value, target });

/** Runs bench/runner.ts with the given sections and returns its stdout (its figures are read from there). */
function runnerBench(sections: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/runner.ts", ...sections], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      process.stderr.write(d);
    });
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`bench/runner.ts exited ${code}`))));
  });
}

const pick = (text: string, re: RegExp): string | null => re.exec(text)?.[1] ?? null;
const orMissing = (v: string | null, what: string) => v ?? `n/a (${what} not found in bench:runner output)`;

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = loadavg()[0]!.toFixed(2);
  const ffmpeg = (await run("ffmpeg", ["-version"])).stdout.split("\n")[0]!.split(" Copyright")[0];
  log(`# npm run bench — ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);

  log("\n## encode cost and job overhead (bench/runner.ts)");
  const runnerOut = await runnerBench(["encode", "quality", "overhead"]);

  log("\n## stack A: one runner (CONCURRENCY 2), product defaults (POLL_MS/WATCH_MS 1000, STOP_GRACE_MS 2000, LEASE_MS 30000)");
  const a = await startBenchStack("a", 1, { CONCURRENCY: "2" });
  let load;
  let stop;
  try {
    load = await benchRunnerLoad(a, QUEUED_TRIALS);
    stop = await benchStopLatency(a, STOP_TRIALS);
  } finally {
    await a.stop();
  }

  log("\n## stack B: no runner (claim loops and workerd memory)");
  const b = await startBenchStack("b", 0);
  let claims;
  let fair;
  let fairHistory;
  let memory;
  let sweep;
  try {
    claims = await benchClaims(b);
    log(`  claims: ${claims.variations} in ${claims.seconds.toFixed(1)} s by ${claims.loops} loops, ${claims.doubleClaims} double`);
    // The fair-share claim takes turns between users: 50 users × 2 jobs × 20 variations, then the same with
    // 1,000 finished jobs (20,000 completed variations) in the history, which must not slow it down.
    fair = await benchClaims(b, { users: 50, jobsPerUser: 2, variationsPerJob: 20 });
    log(`  claims, 50 users: ${fair.variations} in ${fair.seconds.toFixed(1)} s, ${fair.doubleClaims} double`);
    fairHistory = await benchClaims(b, { users: 50, jobsPerUser: 2, variationsPerJob: 20, historyJobs: 1000 });
    log(`  claims, 50 users + history: ${fairHistory.variations} in ${fairHistory.seconds.toFixed(1)} s, ${fairHistory.doubleClaims} double`);
    memory = await benchWorkerdMemory(b);
    sweep = await benchWebhookSweep(b);
    log(`  webhook sweep: ${sweep.emptyMs.toFixed(1)} ms empty, ${sweep.heldMs.toFixed(1)} ms with ${sweep.backlog} rows behind a held endpoint`);
  } finally {
    await b.stop();
  }

  add(`Stop latency: cancel request → last FFmpeg exited (${stop.trials} trials, 2 encodes each)`, `p50 ${s(percentile(stop.stopMs, 50))} · p95 ${s(percentile(stop.stopMs, 95))} · max ${s(Math.max(...stop.stopMs))}`, "p95 ≤ 1.2 s (Runner issue)");
  add(`Stop latency: cancel request → GET /api/jobs/:id reads terminal`, `p50 ${s(percentile(stop.apiMs, 50))} · p95 ${s(percentile(stop.apiMs, 95))}`);
  add("Stop stages used (variations)", Object.entries(stop.stages).map(([k, v]) => `${k}: ${v}`).join(", "));
  add(`Queued-job cancel: POST /api/jobs/:id/cancel round trip (${load.queuedCancelMs.length} trials, 200 cancelled)`, `p50 ${s(percentile(load.queuedCancelMs, 50))} · p95 ${s(percentile(load.queuedCancelMs, 95))}`);
  add("Encode time ratio seed recipe / ours (30 s 1080×1920, one run)", orMissing(pick(runnerOut, /ratio seed\/ours = ([\d.]+)/), "ratio"), "≥ 2.5");
  add(
    "SSIM vs source: seed recipe · ours",
    `${orMissing(pick(runnerOut, /seed recipe .*SSIM vs source ([\d.]+)/), "seed SSIM")} · ${orMissing(pick(runnerOut, /our recipe .*SSIM vs source ([\d.]+)/), "our SSIM")}`,
    "ours ≥ seed",
  );
  add("Job overhead: 6-variation job (first claim → completed) / bare FFmpeg, concurrency 2", orMissing(pick(runnerOut, /job: first claim → completed .*ratio ([\d.]+)/), "overhead ratio"), "≤ 1.05");
  add("Job overhead incl. upload and queue wait: POST → completed / bare FFmpeg", orMissing(pick(runnerOut, /job: POST \/api\/jobs → completed .*ratio ([\d.]+)/), "POST ratio"), "≤ 1.12");
  add(
    "Job overhead vs bare FFmpeg that also measures (issue 11's measurement): first claim → completed · POST → completed",
    `${orMissing(pick(runnerOut, /bare FFmpeg doing the measurement too .*job ratio ([\d.]+)/), "measured job ratio")} · ` +
      orMissing(pick(runnerOut, /bare FFmpeg doing the measurement too .*POST → completed ratio ([\d.]+)/), "measured POST ratio"),
  );
  add(
    "Quality measurement (SSIM/PSNR, fingerprint, still) / encode, per variation · over 5 variations incl. the per-source part (CPU)",
    `${orMissing(pick(runnerOut, /measurement per variation .*of the encode \(wall\), ([\d.]+ %) \(CPU\)/), "quality CPU")} · ` +
      `${orMissing(pick(runnerOut, /over the 5 variations [\d.]+ % \(wall\), ([\d.]+ %) \(CPU\)/), "quality amortized")}`,
    "≤ 15 %",
  );
  add("Encode cost: our recipe / bare transcode with the same x264 settings (wall)", orMissing(pick(runnerOut, /ratio ours\/bare transcode = ([\d.]+)/), "bare ratio"), "≤ 1.15");
  add("DB round trips per busy runner-second (2 encodes, WATCH_MS 1000)", load.busyRoundTripsPerSecond.toFixed(2), "≤ 1");
  add("DB round trips per idle poll (POLL_MS 1000)", `${load.idleRoundTripsPerPoll.toFixed(2)} (${load.idleRoundTripsPerSecond.toFixed(2)}/s)`);
  add(`Claim throughput: ${claims.loops} concurrent claim loops, ${claims.variations} no-op variations (claim + finish)`, `${claims.claimsPerSecond.toFixed(0)} claims/s (${claims.seconds.toFixed(1)} s)`);
  add(`Claim throughput, fair share: ${fair.loops} loops, ${fair.users} users × 2 jobs × 20 variations`, `${fair.claimsPerSecond.toFixed(0)} claims/s (${fair.seconds.toFixed(1)} s)`);
  add(`… the same with ${fairHistory.historyJobs} finished jobs in the history`, `${fairHistory.claimsPerSecond.toFixed(0)} claims/s (${fairHistory.seconds.toFixed(1)} s)`, "flat as jobs grow");
  add("Double claims / variations left unclaimed (all three claim runs)", `${claims.doubleClaims + fair.doubleClaims + fairHistory.doubleClaims} / ${claims.unclaimed + fair.unclaimed + fairHistory.unclaimed}`, "0 / 0");
  add(
    `Webhook sweep (libSQL over HTTP, median of 5; ${IDLE_WEBHOOKS.toLocaleString("en")} idle webhooks): nothing pending · ${sweep.backlog.toLocaleString("en")} rows behind another user's held endpoint · that backlog's next row once it answers · the backlog all backing off after 4xx`,
    `${sweep.emptyMs.toFixed(1)} ms · ${sweep.heldMs.toFixed(1)} ms · ${sweep.nextRowMs.toFixed(1)} ms · ${sweep.backoffMs.toFixed(1)} ms${sweep.otherTaken ? "" : " [the other user's event was NOT taken]"}`,
    "flat as the backlog grows",
  );
  add(
    "workerd RSS (wrangler dev, local) streaming a 1 GiB upload (POST /api/jobs multipart)",
    `${memory.upload.baselineMiB.toFixed(0)} → peak ${memory.upload.peakMiB.toFixed(0)} MiB (HTTP ${memory.upload.status}, ${(memory.upload.bytes / 2 ** 20 / memory.upload.seconds).toFixed(0)} MiB/s)` +
      (memory.upload.retriedAfterReload ? " [2nd try: wrangler dev reloaded mid-upload]" : ""),
    "bounded, not ∝ size",
  );
  add(
    "workerd RSS (wrangler dev, local) streaming a 1 GiB ZIP (16 × 64 MiB, STORE)",
    `${memory.zip.baselineMiB.toFixed(0)} → peak ${memory.zip.peakMiB.toFixed(0)} MiB (HTTP ${memory.zip.status}, ${(memory.zip.bytes / 2 ** 20 / memory.zip.seconds).toFixed(0)} MiB/s)` +
      (memory.putRetries ? ` [${memory.putRetries} seeding PUT(s) retried]` : ""),
    "bounded, not ∝ size",
  );

  const width = (k: keyof Row) => Math.max(k.length, ...rows.map((r) => r[k].length));
  const line = (r: Row) => `| ${r.measure.padEnd(width("measure"))} | ${r.value.padEnd(width("value"))} | ${r.target.padEnd(width("target"))} |`;
  // Every figure is wall time on a shared machine: the 1-minute load average before and after says how quiet it was.
  console.log(
    `npm run bench — ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${ffmpeg}, ` +
      `${((performance.now() - started) / 60_000).toFixed(1)} min, load ${loadBefore} → ${loadavg()[0]!.toFixed(2)}`,
  );
  console.log("");
  console.log(line({ measure: "Measure", value: "Value", target: "Target" }));
  console.log(`|${"-".repeat(width("measure") + 2)}|${"-".repeat(width("value") + 2)}|${"-".repeat(width("target") + 2)}|`);
  for (const r of rows) console.log(line(r));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
