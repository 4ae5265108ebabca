// Local libSQL server: Hrana over HTTP (JSON, protocol v2/v3 pipelines) for development and tests.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Engine, HttpError, type PipelineBody } from "./streams";

export interface LibsqlServerOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** Directory for `<name>.db` files; databases are in-memory when omitted. */
  dataDir?: string;
  /** When set, every Hrana request must carry `Authorization: Bearer <authToken>`. */
  authToken?: string;
  /** How long a stream may stay idle before it is closed and its open transaction rolled back. Default 10000. */
  txTtlMs?: number;
  log?: (msg: string) => void;
}

export interface LibsqlServer {
  /** Base URL without trailing slash; append `/<name>/` to use a separate database. */
  url: string;
  port: number;
  /** Stops accepting requests, lets in-flight ones finish, rolls back open transactions, closes databases. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 50 * 1024 * 1024;
// `/v2/pipeline` is the "default" database; `/<name>/v2/pipeline` is what a client with base URL `http://h/<name>/` posts.
const PIPELINE_PATH = /^\/(?:([A-Za-z0-9_-]+)\/)?v[23]\/pipeline$/;

/** Starts a Hrana-over-HTTP server backed by the `libsql` package; resolves once it is listening. */
export async function startLibsqlServer(opts: LibsqlServerOptions = {}): Promise<LibsqlServer> {
  const host = opts.host ?? "127.0.0.1";
  const engine = new Engine({ dataDir: opts.dataDir, txTtlMs: opts.txTtlMs ?? 10_000, log: opts.log ?? (() => {}) });
  const inFlight = new Set<Promise<void>>();
  let closing: Promise<void> | undefined;

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
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (req.method === "GET" && (path === "/" || path === "/health" || /^\/v[23]$/.test(path))) {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
      return;
    }
    // Plain text on purpose: @libsql/client then raises code SERVER_ERROR, which callers treat as "unavailable".
    if (closing) return void res.writeHead(503, { "content-type": "text/plain" }).end("server is shutting down");
    if (opts.authToken !== undefined && req.headers.authorization !== `Bearer ${opts.authToken}`) {
      return sendJson(res, 401, { message: "missing or invalid bearer token", code: "UNAUTHORIZED" });
    }
    const match = PIPELINE_PATH.exec(path);
    if (!match) return sendJson(res, 404, { message: `no route for ${req.method} ${path}`, code: "NOT_FOUND" });
    if (req.method !== "POST") return sendJson(res, 405, { message: "use POST", code: "METHOD_NOT_ALLOWED" });
    // Fires when the connection closes before the reply is finished: a client timeout (the edge aborts after
    // 8 s), a worker isolate that went away, a killed process.
    const gone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const body = parsePipelineBody(await readBody(req));
      sendJson(res, 200, await engine.pipeline(match[1] ?? "default", body, gone.signal));
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
