import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

type Labels = Record<string, string>;
const key = (labels: Labels) => JSON.stringify(Object.entries(labels).sort());
const render = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

class Counter {
  private values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string, readonly type: "counter" | "gauge" = "counter") {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    const cur = this.values.get(k) ?? { labels, value: 0 };
    cur.value += by;
    this.values.set(k, cur);
  }
  set(value: number, labels: Labels = {}): void {
    this.values.set(key(labels), { labels, value });
  }
  get(labels: Labels = {}): number {
    return this.values.get(key(labels))?.value ?? 0;
  }
  expose(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${render(labels)} ${value}`);
    return lines.join("\n");
  }
}

class Histogram {
  private counts: number[];
  private sum = 0;
  private n = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.n += 1;
    this.buckets.forEach((b, i) => {
      if (value <= b) this.counts[i]! += 1;
    });
  }
  get count(): number {
    return this.n;
  }
  expose(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.n}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.n}`);
    return lines.join("\n");
  }
}

/** The runner's Prometheus metrics (text exposition format 0.0.4). */
export class RunnerMetrics {
  readonly finished = new Counter("runner_variations_finished_total", "Variations this runner stopped working on, by outcome");
  readonly claimed = new Counter("runner_variations_claimed_total", "Variations claimed by this runner");
  readonly ffmpegRunning = new Counter("runner_ffmpeg_processes", "FFmpeg processes running now", "gauge");
  readonly childrenWaiting = new Counter(
    "runner_children_waiting_for_uid",
    "FFmpeg/ffprobe runs waiting for a free uid of FFMPEG_USER's range (often above 0: the range is too small)",
    "gauge",
  );
  readonly active = new Counter("runner_active_variations", "Variations in hand (downloading, encoding or uploading)", "gauge");
  readonly stopStages = new Counter("runner_stop_stage_total", "Stop-sequence stages sent, by stage (q, sigterm, sigkill)");
  readonly stopDuration = new Histogram(
    "runner_stop_duration_seconds",
    "From the first stop stage to the FFmpeg process exit",
    [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10],
  );
  readonly ticks = new Counter("runner_ticks_total", "Loop ticks (each is one batched round trip: heartbeat, cancel watch, claims)");
  readonly dbRoundTrips = new Counter("runner_db_round_trips_total", "HTTP round trips to the database");
  readonly dbErrors = new Counter("runner_db_errors_total", "Database calls that failed");
  readonly claimLatency = new Histogram(
    "runner_claim_latency_seconds",
    "Duration of one claim round trip",
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  readonly info = new Counter("runner_info", "Runner identity", "gauge");

  expose(): string {
    const all = [
      this.info,
      this.finished,
      this.claimed,
      this.active,
      this.ffmpegRunning,
      this.stopStages,
      this.stopDuration,
      this.ticks,
      this.dbRoundTrips,
      this.dbErrors,
      this.claimLatency,
    ];
    return all.map((m) => m.expose()).join("\n") + "\n";
  }
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** `/healthz` (200 while `healthy()` holds, else 503) and `/metrics` on the given port. */
export async function startMetricsServer(opts: {
  port: number;
  host?: string;
  metrics: RunnerMetrics;
  health: () => { ok: boolean } & Record<string, unknown>;
}): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405).end();
    if (path === "/healthz") {
      const h = opts.health();
      res.writeHead(h.ok ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify(h));
    } else if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(opts.metrics.expose());
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "0.0.0.0", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
