// Local libSQL server: Hrana over HTTP (JSON, protocol v2/v3 pipelines) for development and tests.
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, isIP } from "node:net";
import { Engine, HttpError, type PipelineBody } from "./streams";

export interface LibsqlServerOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** Directory for `<name>.db` files; without it, a private temporary directory removed by close(). */
  dataDir?: string;
  /** Every Hrana request must carry `Authorization: Bearer <authToken>`. Required unless insecureNoAuthForTests. */
  authToken?: string;
  /**
   * Tests only: serve without any token. Any local process (and, through a browser bug, any web page) could then
   * read and change every database, so nothing a developer runs sets this.
   */
  insecureNoAuthForTests?: boolean;
  /**
   * Also serve `/<name>/v2/pipeline` as separate databases (`<name>.db`; letters, digits, `_`, `-`, at most 128),
   * which tests use for one database per file. Off: only the default database exists.
   */
  namedDatabases?: boolean;
  /** How long an idle stream keeps its state before it is closed and its open transaction rolled back. Default 10000. */
  txTtlMs?: number;
  /** How long a write waits for the write lock held by another stream's transaction before SQLITE_BUSY. Default 5000. */
  busyTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface LibsqlServer {
  /** Base URL without trailing slash; with namedDatabases, append `/<name>/` to use a separate database. */
  url: string;
  port: number;
  /** Stops accepting requests, lets in-flight ones finish, rolls back open transactions, closes databases. */
  close(): Promise<void>;
  /**
   * What the server is doing right now: requests waiting for a write lock, and how many requests so far saw their
   * client close the connection before the reply. Tests wait on these instead of sleeping.
   */
  activity(): { waitingForLock: number; clientsGone: number };
}

const MAX_BODY_BYTES = 50 * 1024 * 1024;
// `/v2/pipeline` is the "default" database; `/<name>/v2/pipeline` is what a client with base URL `http://h/<name>/`
// posts. `/v3/pipeline` is the same handler; `GET /v3` stays 404, because a client that sees Hrana 3 advertised
// would also use `/v3/cursor`, which is not served.
const PIPELINE_PATH = /^\/(?:([^/]+)\/)?v[23]\/pipeline$/;
const DATABASE_NAME = /^[A-Za-z0-9_-]{1,128}$/;
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * Starts a Hrana-over-HTTP server backed by the `libsql` package; resolves once it is listening. It only answers
 * local tools: requests from browsers (an Origin header), non-JSON posts, Host names other than loopback (DNS
 * rebinding) and SQL that would touch other files are refused.
 */
export async function startLibsqlServer(opts: LibsqlServerOptions = {}): Promise<LibsqlServer> {
  const host = opts.host ?? "127.0.0.1";
  if (!opts.authToken && !opts.insecureNoAuthForTests) {
    throw new Error("startLibsqlServer: authToken is required (insecureNoAuthForTests is for tests only)");
  }
  const tokenDigest = opts.authToken ? sha256(opts.authToken) : undefined;
  // An IP literal cannot be rebound by DNS, so the address the server was bound to is an acceptable Host too.
  const allowedHosts = new Set(LOOPBACK_HOSTS);
  if (isIP(host)) allowedHosts.add(host.includes(":") ? `[${host}]` : host);
  const engine = new Engine({
    dataDir: opts.dataDir,
    txTtlMs: opts.txTtlMs ?? 10_000,
    busyTimeoutMs: opts.busyTimeoutMs ?? 5_000,
    log: opts.log ?? (() => {}),
  });
  const inFlight = new Set<Promise<void>>();
  let closing: Promise<void> | undefined;
  let clientsGone = 0;

  const server = createServer((req, res) => {
    const done = handle(req, res).catch((err) => {
      // Only reached for bugs in this server: a reply must still go out.
      (opts.log ?? console.error)(`libsql: ${err instanceof Error ? err.stack : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { message: "internal server error", code: "INTERNAL_ERROR" });
    });
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const hostHeader = (req.headers.host ?? "").toLowerCase().replace(/:\d+$/, "");
    if (!allowedHosts.has(hostHeader)) {
      return sendJson(res, 403, {
        message: `Host ${JSON.stringify(req.headers.host ?? "")} is refused: this local server answers only 127.0.0.1, localhost or [::1]`,
        code: "HOST_REFUSED",
      });
    }
    if (req.headers.origin !== undefined) {
      return sendJson(res, 403, {
        message: `requests from web pages are refused (Origin ${JSON.stringify(req.headers.origin)}): this server is for local tools`,
        code: "ORIGIN_REFUSED",
      });
    }
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (req.method === "GET" && (path === "/" || path === "/health" || path === "/v2")) {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
      return;
    }
    // Plain text on purpose: @libsql/client then raises code SERVER_ERROR, which callers treat as "unavailable".
    if (closing) return void res.writeHead(503, { "content-type": "text/plain" }).end("server is shutting down");
    const match = PIPELINE_PATH.exec(path);
    if (!match) return sendJson(res, 404, { message: `no route for ${req.method} ${path}`, code: "NOT_FOUND" });
    if (tokenDigest && !bearerMatches(req.headers.authorization, tokenDigest)) {
      return sendJson(res, 401, { message: "missing or invalid bearer token", code: "UNAUTHORIZED" });
    }
    const dbName = match[1] ?? "default";
    if (match[1] !== undefined && (!opts.namedDatabases || !DATABASE_NAME.test(dbName))) {
      const why = opts.namedDatabases ? "names are 1-128 letters, digits, '_' or '-'" : "this server serves only the default database (/v2/pipeline)";
      return sendJson(res, 404, { message: `unknown database ${JSON.stringify(dbName)}: ${why}`, code: "NAMESPACE_DOESNT_EXIST" });
    }
    if (req.method !== "POST") return sendJson(res, 405, { message: "use POST", code: "METHOD_NOT_ALLOWED" });
    // A web page can send a "simple" cross-origin POST (text/plain, form types) without a CORS preflight.
    const mediaType = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (mediaType !== "application/json") {
      return sendJson(res, 415, {
        message: `content-type ${JSON.stringify(req.headers["content-type"] ?? "")} is refused: send application/json`,
        code: "UNSUPPORTED_MEDIA_TYPE",
      });
    }
    // Fires when the connection closes before the reply is finished: a client timeout (the edge aborts after
    // 8 s), a worker isolate that went away, a killed process.
    const gone = new AbortController();
    res.once("close", () => {
      if (res.writableFinished) return;
      clientsGone++;
      gone.abort();
    });
    try {
      const body = parsePipelineBody(await readBody(req));
      sendJson(res, 200, await engine.pipeline(dbName, body, gone.signal));
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      if (err.status === 413) res.setHeader("connection", "close");
      sendJson(res, err.status, { message: err.message, code: err.code });
    }
  }

  // Node closes an idle keep-alive connection after 5 s by default. workerd pools its connections to this server
  // and can reuse one the server has just closed: a request that waits longer than that between two database
  // calls (a 1 GiB upload streamed to R2 before its createJob) then fails with "Network connection lost" → 503.
  // Loopback clients close their own sockets when they exit, so keeping idle ones open is cheap.
  server.keepAliveTimeout = 15 * 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    url,
    port,
    activity: () => ({ waitingForLock: engine.waitingForLock(), clientsGone }),
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        // Rolling back idle transactions first lets requests queued behind them run to completion.
        engine.shutdown();
        while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
        server.closeAllConnections();
        await stopped;
        engine.closeDatabases();
      })();
      return closing;
    },
  };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Compares digests, so neither the token's length nor its content leaks through the comparison's timing. */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const m = /^Bearer (.+)$/i.exec(header ?? "");
  return m !== null && timingSafeEqual(sha256(m[1]!), expected);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  // @libsql/client only decodes error bodies whose content-type is exactly "application/json".
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body exceeds ${MAX_BODY_BYTES} bytes`, "BODY_TOO_LARGE");
      chunks.push(chunk);
    }
  } catch (err) {
    throw err instanceof HttpError ? err : new HttpError(400, "request body was cut off", "BODY_ABORTED");
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parsePipelineBody(text: string): PipelineBody {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, "request body is not valid JSON", "INVALID_JSON");
  }
  const b = body as { baton?: unknown; requests?: unknown } | null;
  const valid =
    typeof b === "object" &&
    b !== null &&
    (b.baton == null || typeof b.baton === "string") &&
    Array.isArray(b.requests) &&
    b.requests.every((r) => typeof r === "object" && r !== null && typeof (r as { type?: unknown }).type === "string");
  if (!valid) throw new HttpError(400, "expected {baton?: string, requests: [{type, ...}]}", "INVALID_PIPELINE");
  return b as PipelineBody;
}
