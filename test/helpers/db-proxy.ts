// A libSQL (Hrana over HTTP) proxy for fault tests. It forwards every request, and a rule can, per request:
// drop the REPLY (the request reaches the server and commits, the client sees its connection reset — "the reply
// is lost after the commit"), or hold the request for a while before forwarding it ("the database is slow").
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

/** `hold`: forward once the promise settles (the test decides when); `holdMs`: after that long. */
export type DbProxyVerdict = "pass" | "drop-reply" | { holdMs: number } | { hold: Promise<unknown> };
/** Sees the Hrana pipeline body as text (the SQL is in it). */
export type DbProxyRule = (body: string) => DbProxyVerdict;

export interface DbProxy {
  /** The database URL to give a client instead of the real one (same path). */
  url: string;
  setRule(rule: DbProxyRule): void;
  /** Bodies of requests whose reply was dropped / that were held, in order. */
  dropped: string[];
  held: string[];
  /** Size in bytes of every reply forwarded to the client, in order. */
  replyBytes: number[];
  close(): Promise<void>;
}

/** Drops the reply of the first request matching `match`, and passes everything else. */
export const dropFirstReply = (match: (body: string) => boolean): DbProxyRule => {
  let done = false;
  return (body) => {
    if (done || !match(body)) return "pass";
    done = true;
    return "drop-reply";
  };
};

export async function startDbProxy(target: string, rule: DbProxyRule = () => "pass"): Promise<DbProxy> {
  const upstream = new URL(target);
  const dropped: string[] = [];
  const held: string[] = [];
  const replyBytes: number[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const text = body.toString("utf8");
      const verdict = rule(text);
      const forward = () => {
        const up = request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
          (upRes) => {
            const parts: Buffer[] = [];
            upRes.on("data", (c: Buffer) => parts.push(c));
            upRes.on("end", () => {
              if (verdict === "drop-reply") {
                // The server has answered (the batch committed); the client never hears it.
                dropped.push(text);
                req.socket.destroy();
                return;
              }
              if (res.destroyed) return;
              const reply = Buffer.concat(parts);
              replyBytes.push(reply.length);
              res.writeHead(upRes.statusCode ?? 502, upRes.headers);
              res.end(reply);
            });
          },
        );
        up.on("error", () => res.destroy());
        up.end(body);
      };
      if (typeof verdict === "object" && "hold" in verdict) {
        held.push(text);
        void verdict.hold.finally(forward);
      } else if (typeof verdict === "object") {
        held.push(text);
        const t = setTimeout(() => (timers.delete(t), forward()), verdict.holdMs);
        timers.add(t);
      } else {
        forward();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const url = new URL(target);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    setRule: (r) => (rule = r),
    dropped,
    held,
    replyBytes,
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
