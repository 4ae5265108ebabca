// A fault-injecting HTTP proxy between runners and the edge: it forwards everything unchanged, except requests a
// rule picks out, whose connection it cuts (before or part-way through the body) — what a runner sees when the
// edge becomes unreachable in the middle of an upload.
import { createServer, request, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

/** `cutAfterBytes`: forward this many body bytes, then drop both connections; 0 drops at once. */
export type ProxyVerdict = "pass" | { cutAfterBytes: number };
export type ProxyRule = (req: IncomingMessage) => ProxyVerdict;

export interface ProxyEvent {
  at: number;
  method: string;
  path: string;
  verdict: "pass" | "cut";
  bytesForwarded: number;
}

export interface FaultProxy {
  url: string;
  /** Where requests go (set once the edge's address is known). */
  setTarget(url: string): void;
  setRule(rule: ProxyRule): void;
  events: ProxyEvent[];
  close(): Promise<void>;
}

export async function startFaultProxy(): Promise<FaultProxy> {
  let upstream: URL | null = null;
  let rule: ProxyRule = () => "pass";
  const events: ProxyEvent[] = [];
  const server = createServer((req, res) => {
    const verdict = rule(req);
    const event: ProxyEvent = { at: Date.now(), method: req.method ?? "", path: req.url ?? "", verdict: verdict === "pass" ? "pass" : "cut", bytesForwarded: 0 };
    events.push(event);
    if (!upstream) return void res.writeHead(502).end("proxy has no target yet");
    const up = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    const cut = () => {
      // Destroying the client's socket is what "edge unreachable" looks like from the runner: a reset mid-request.
      req.socket.destroy();
      up.destroy();
    };
    if (verdict !== "pass" && verdict.cutAfterBytes === 0) return cut();
    req.on("data", (chunk: Buffer) => {
      if (verdict !== "pass" && event.bytesForwarded + chunk.length > verdict.cutAfterBytes) {
        up.write(chunk.subarray(0, verdict.cutAfterBytes - event.bytesForwarded));
        event.bytesForwarded = verdict.cutAfterBytes;
        return cut();
      }
      event.bytesForwarded += chunk.length;
      up.write(chunk);
    });
    req.on("end", () => up.end());
    req.on("error", () => up.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    setTarget: (u) => (upstream = new URL(u)),
    setRule: (r) => (rule = r),
    events,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
