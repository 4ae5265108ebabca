// Keeps compose.yaml (self-hosted sqld + runners) and .env.example true to the runner: the runner service's
// environment, with .env.example's values substituted the way Compose does, must be accepted by the runner's own
// zod schema on top of the image's ENV defaults; every variable it sets must be one the runner reads; every
// ${VAR} the file references must be documented in .env.example (and nothing there may be stale).
import { execFileSync } from "node:child_process";
import { createPublicKey, randomBytes, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { Schema as RunnerSchema } from "../../runner/config";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

interface Service {
  image?: string;
  build?: { context?: string; dockerfile?: string };
  environment?: Record<string, string | number | null> | string[];
  volumes?: (string | { source?: string; target: string })[];
  depends_on?: Record<string, { condition?: string }> | string[];
  deploy?: { replicas?: number | string };
  restart?: string;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  stop_grace_period?: string;
  ports?: string[];
  entrypoint?: string | string[];
  user?: string;
  pids_limit?: number | string;
}
interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const compose = parse(read("compose.yaml")) as ComposeFile;
const runner = compose.services.runner!;
const sqld = compose.services.sqld!;

/**
 * .env.example: values of the active lines; the same with every `replace-with-…` placeholder replaced, as an
 * operator following it would (`filled`); and every name documented (active or as a commented `# NAME=`).
 */
function envExample(): { values: Record<string, string>; filled: Record<string, string>; documented: Set<string> } {
  const values: Record<string, string> = {};
  const documented = new Set<string>();
  for (const line of read(".env.example").split("\n")) {
    const m = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    documented.add(m[2]!);
    if (!m[1]) values[m[2]!] = m[3]!;
  }
  const filled = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.startsWith("replace-with-") ? randomBytes(32).toString("hex") : v]));
  return { values, filled, documented };
}

/** Compose interpolation ($$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+r}, ${VAR+r}). */
function interpolate(text: string, env: Record<string, string>, seen?: Set<string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (all, braced: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (all === "$$") return "$";
      const name = (braced ?? bare)!;
      seen?.add(name);
      const value = env[name];
      const unset = op?.startsWith(":") ? value === undefined || value === "" : value === undefined;
      switch (op?.replace(":", "")) {
        case "-":
          return unset ? interpolate(arg!, env, seen) : value!;
        case "?":
          if (unset) throw new Error(`compose would stop: ${name}: ${arg}`);
          return value!;
        case "+":
          return unset ? "" : interpolate(arg!, env, seen);
        default:
          return value ?? "";
      }
    },
  );
}

/** Every variable referenced anywhere in compose.yaml (values only; Compose does not interpolate keys). */
function referencedVariables(): Set<string> {
  const seen = new Set<string>();
  const walk = (node: unknown): void => {
    if (typeof node === "string") interpolate(node, new Proxy({}, { get: () => "x" }), seen);
    else if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") Object.values(node).forEach(walk);
  };
  walk(compose);
  return seen;
}

/** The runner service's environment as Compose would pass it, interpolated with `env`. */
function runnerEnv(env: Record<string, string>): Record<string, string> {
  const raw = runner.environment ?? {};
  const entries: [string, string][] = Array.isArray(raw)
    ? raw.map((item) => {
        const i = item.indexOf("=");
        return i < 0 ? [item, env[item] ?? ""] : [item.slice(0, i), item.slice(i + 1)];
      })
    : Object.entries(raw).map(([k, v]) => [k, v === null ? (env[k] ?? "") : String(v)]);
  return Object.fromEntries(entries.map(([k, v]) => [k, interpolate(v, env)]));
}

/** ENV defaults baked into Dockerfile.runner (`ENV A=b \ C=d`). */
function imageEnv(): Record<string, string> {
  const text = read("Dockerfile.runner").replace(/\\\n/g, " ");
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^ENV\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const [, k, v] of m[1]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S*)/g)) out[k!] = v!;
  }
  return out;
}

/** What loadRunnerConfig feeds its schema: empty values count as unset. */
const cleaned = (env: Record<string, string>) => Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ""));

const runnerVariables = Object.keys(RunnerSchema.shape);
const requiredRunnerVariables = Object.entries(RunnerSchema.shape)
  .filter(([, field]) => !field.safeParse(undefined).success)
  .map(([name]) => name);

/** Processes and threads of a runner container besides its FFmpeg children: tini, Node's threads, healthchecks. */
const RUNNER_OWN_PIDS = 256;

const durationMs = (d: string) => {
  const parts = [...d.matchAll(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g)];
  expect(parts.map((p) => p[0]).join(""), `duration "${d}"`).toBe(d);
  const unit = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 } as const;
  return parts.reduce((sum, [, n, u]) => sum + Number(n) * unit[u as keyof typeof unit], 0);
};

describe("compose.yaml runner service", () => {
  const example = envExample();

  it("is built from Dockerfile.runner", () => {
    expect(runner.build).toMatchObject({ context: ".", dockerfile: "Dockerfile.runner" });
  });

  it("sets only variables the runner reads", () => {
    const unknown = Object.keys(runnerEnv(example.filled)).filter((k) => !runnerVariables.includes(k));
    expect(unknown, "not in the runner's config schema (runner/config.ts)").toEqual([]);
    expect(Object.keys(imageEnv()).filter((k) => k !== "NODE_ENV" && !runnerVariables.includes(k))).toEqual([]);
  });

  it("sets every required runner variable", () => {
    expect(requiredRunnerVariables.sort()).toEqual(["EDGE_URL", "LIBSQL_URL", "RUNNER_TOKEN"]);
    const env = runnerEnv(example.filled);
    for (const name of requiredRunnerVariables) expect(env[name], name).toBeTruthy();
  });

  it("parses with the runner's schema, with .env.example's values and the image's defaults", () => {
    const env = { ...imageEnv(), ...cleaned(runnerEnv(example.filled)) };
    const result = RunnerSchema.safeParse(env);
    expect(result.error?.issues ?? []).toEqual([]);
    expect(result.data).toMatchObject({
      LIBSQL_URL: "http://sqld:8080",
      EDGE_URL: example.filled.EDGE_URL,
      RUNNER_TOKEN: example.filled.RUNNER_TOKEN,
      CONCURRENCY: Number(example.filled.CONCURRENCY),
      METRICS_PORT: 9464,
    });
    expect(result.data!.RUNNER_ID, "RUNNER_ID stays per-process (replicas must not share one)").not.toBe(env.RUNNER_ID);
    expect(runnerEnv(example.filled)).not.toHaveProperty("RUNNER_ID");
  });

  it("refuses to start with .env.example's placeholders left in (RUNNER_TOKEN is long enough to pass otherwise)", () => {
    const result = RunnerSchema.safeParse({ ...imageEnv(), ...cleaned(runnerEnv(example.values)) });
    expect(result.error?.issues.map((i) => i.path.join("."))).toEqual(["RUNNER_TOKEN"]);
    expect(result.error?.issues[0]?.message).toMatch(/still a placeholder/);
  });

  it("stops Compose with a message when a required secret is missing", () => {
    for (const name of ["EDGE_URL", "RUNNER_TOKEN", "LIBSQL_AUTH_TOKEN"]) {
      const { [name]: _, ...rest } = example.filled;
      expect(() => runnerEnv(rest), name).toThrow(new RegExp(`${name}: set ${name} in \\.env`));
    }
  });

  it("points at the compose sqld by default and at any other libSQL URL when LIBSQL_URL is set", () => {
    const turso = "libsql://vr-example.turso.io";
    expect(RunnerSchema.safeParse({ ...imageEnv(), ...cleaned(runnerEnv({ ...example.filled, LIBSQL_URL: turso })) }).data?.LIBSQL_URL).toBe(turso);
    const url = new URL(runnerEnv(example.filled).LIBSQL_URL!);
    expect(compose.services[url.hostname], `service "${url.hostname}"`).toBe(sqld);
    const listen = interpolate(String((sqld.environment as Record<string, string>).SQLD_HTTP_LISTEN_ADDR), example.filled);
    expect(listen).toBe(`0.0.0.0:${url.port}`);
    expect(runner.depends_on).toMatchObject({ sqld: { condition: "service_healthy" } });
  });

  it("runs N replicas (RUNNERS, or --scale runner=N)", () => {
    expect(String(runner.deploy?.replicas)).toBe("${RUNNERS:-2}");
    expect(Number(interpolate(String(runner.deploy!.replicas), example.filled))).toBeGreaterThanOrEqual(1);
  });

  it("keeps WORK_DIR on a named volume, used by a runner started as root that runs FFmpeg as the image's own user", () => {
    const workDir = runnerEnv(example.filled).WORK_DIR!;
    const mount = runner.volumes?.find((v) => (typeof v === "string" ? v.split(":")[1] : v.target) === workDir);
    expect(mount, `a volume mounted at WORK_DIR ${workDir}`).toBeDefined();
    const volume = typeof mount === "string" ? mount.split(":")[0]! : mount!.source!;
    expect(compose.volumes).toHaveProperty(volume);
    // The runner must be root in the container to switch FFmpeg to FFMPEG_USER (runner/config.ts refuses otherwise).
    expect(runner.user ?? "root").toBe("root");
    expect(read("Dockerfile.runner")).not.toMatch(/^USER /m);
    // A uid per running child (runner/uid-pool.ts): enough for any CONCURRENCY up to 62.
    expect(imageEnv().FFMPEG_USER).toBe("61000-61063:990");
    expect(read("Dockerfile.runner")).toMatch(/groupadd --system --gid 990 ffmpeg/);
    const withImage = (concurrency: number) => RunnerSchema.safeParse({ ...imageEnv(), ...cleaned(runnerEnv(envExample().filled)), CONCURRENCY: String(concurrency) });
    expect(withImage(62).data?.FFMPEG_USER).toEqual({ uid: 61000, lastUid: 61063, gid: 990 });
    expect(withImage(63).success).toBe(false);
  });

  it("has a healthcheck on the runner's metrics port, a restart policy and a stop grace above the shutdown budget", () => {
    const port = runnerEnv(example.filled).METRICS_PORT;
    expect(JSON.stringify(runner.healthcheck?.test)).toContain(`http://127.0.0.1:${port}/healthz`);
    expect(runner.restart).toBe("unless-stopped");
    const budget = Number(/const SHUTDOWN_BUDGET_MS = ([\d_]+);/.exec(read("runner/loop.ts"))![1]!.replace(/_/g, ""));
    const grace = durationMs(runner.stop_grace_period!);
    expect(grace, "room to exit after the shutdown budget").toBeGreaterThanOrEqual(budget + 2000);
    expect(grace, "no longer than Docker's default: the runner is built for it").toBeLessThanOrEqual(10_000);
  });

  it("caps the container's processes and threads (pids_limit) with room for every FFmpeg uid's own limit and the runner", () => {
    expect(runner.pids_limit, "compose.yaml runner: pids_limit").toBeDefined();
    const limit = Number(interpolate(String(runner.pids_limit), example.filled));
    expect(Number.isInteger(limit) && limit > 0, `pids_limit ${limit}: a number, not unlimited (0, -1)`).toBe(true);
    const config = RunnerSchema.parse({ ...imageEnv(), ...cleaned(runnerEnv(example.filled)) });
    // A runner holds at most CONCURRENCY + 2 uids at once, each allowed FFMPEG_MAX_PROCESSES (docs/runner.md): a
    // leftover of each at its limit must still leave the killer and the runner room to run, or it kills nothing.
    const children = (config.CONCURRENCY + 2) * config.FFMPEG_MAX_PROCESSES;
    expect(limit, `(CONCURRENCY ${config.CONCURRENCY} + 2) × FFMPEG_MAX_PROCESSES ${config.FFMPEG_MAX_PROCESSES} + the runner's own`).toBeGreaterThanOrEqual(children + RUNNER_OWN_PIDS);
  });
});

describe("compose.yaml sqld service", () => {
  const example = envExample();

  it("uses the official libSQL server image, pinned, with its data on a volume", () => {
    expect(sqld.image).toMatch(/^ghcr\.io\/tursodatabase\/libsql-server:v\d+\.\d+\.\d+$/);
    expect(sqld.volumes).toContain("sqld-data:/var/lib/sqld");
    const env = sqld.environment as Record<string, string>;
    expect(env.SQLD_DB_PATH).toMatch(/^\/var\/lib\/sqld\//);
  });

  it("requires JWT auth and publishes plain HTTP on loopback unless told otherwise", () => {
    const env = sqld.environment as Record<string, string>;
    expect(env.SQLD_AUTH_JWT_KEY).toMatch(/^\$\{SQLD_AUTH_JWT_KEY:\?/);
    expect(sqld.ports?.map((p) => interpolate(p, example.values))).toEqual(["127.0.0.1:8080:8080"]);
    expect(sqld.restart).toBe("unless-stopped");
    expect(JSON.stringify(sqld.healthcheck?.test)).toContain("GET /health");
  });
});

describe(".env.example", () => {
  const example = envExample();

  it("documents every variable compose.yaml references, and only those", () => {
    const referenced = [...referencedVariables()].sort();
    expect(referenced.filter((v) => !example.documented.has(v)), "missing from .env.example").toEqual([]);
    expect([...example.documented].filter((v) => !referenced.includes(v)), "documented but unused").toEqual([]);
  });

  it("gives a key-pair command whose token sqld would accept (EdDSA JWT, raw public key in URL-safe base64)", () => {
    const lines = read(".env.example").split("\n");
    const start = lines.findIndex((l) => l.startsWith("#   node -e"));
    expect(start).toBeGreaterThan(-1);
    const end = lines.findIndex((l, i) => i >= start && l.trimEnd().endsWith("'"));
    const command = lines.slice(start, end + 1).map((l) => l.replace(/^#\s*/, "")).join("\n");
    const out = execFileSync("bash", ["-c", command], { encoding: "utf8" });
    const printed = Object.fromEntries(out.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    expect(Object.keys(printed)).toEqual(["SQLD_AUTH_JWT_KEY", "LIBSQL_AUTH_TOKEN"]);
    expect(Buffer.from(printed.SQLD_AUTH_JWT_KEY!, "base64url")).toHaveLength(32);
    const [header, payload, signature] = printed.LIBSQL_AUTH_TOKEN!.split(".");
    expect(JSON.parse(Buffer.from(header!, "base64url").toString())).toEqual({ alg: "EdDSA", typ: "JWT" });
    expect(JSON.parse(Buffer.from(payload!, "base64url").toString())).toMatchObject({ a: "rw" });
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: printed.SQLD_AUTH_JWT_KEY! }, format: "jwk" });
    expect(verify(null, Buffer.from(`${header}.${payload}`), key, Buffer.from(signature!, "base64url"))).toBe(true);
  });
});
