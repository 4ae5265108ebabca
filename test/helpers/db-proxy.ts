// A libSQL (Hrana over HTTP) proxy that forwards every request and can drop the REPLY of chosen ones: the request
// reaches the server and commits, the client sees its connection reset — "the reply is lost after the commit".
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

export interface DbProxy {
  /** The database URL to give a client instead of the real one (same path). */
  url: string;
  /** Request bodies whose reply was dropped, in order. */
  dropped: string[];
  close(): Promise<void>;
}

/**
 * `dropReply(body)` decides per request; it sees the JSON pipeline body as text. Each matching reply is dropped
 * only while `times` allows (default once), so the client's retry gets through.
 */
export async function startDbProxy(target: string, dropReply: (body: string) => boolean, times = 1): Promise<DbProxy> {
  const upstream = new URL(target);
  const dropped: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const text = body.toString("utf8");
      const drop = dropped.length < times && dropReply(text);
      const up = request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
        (upRes) => {
          const parts: Buffer[] = [];
          upRes.on("data", (c: Buffer) => parts.push(c));
          upRes.on("end", () => {
            if (drop) {
              // The server has answered (the batch committed); the client never hears it.
              dropped.push(text);
              req.socket.destroy();
              return;
            }
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(Buffer.concat(parts));
          });
        },
      );
      up.on("error", () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const url = new URL(target);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    dropped,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
