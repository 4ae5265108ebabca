import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { onTestFinished } from "vitest";
import type { Handlers } from "../../cli/commands";
import { runCli } from "../../cli/main";

/** Runs the CLI in this process (no stdin), capturing what it prints: the real handlers unless others are given. */
export async function runCapturedCli(argv: string[], env: Record<string, string | undefined>, handlers?: Handlers) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (d) => (out += d));
  stderr.on("data", (d) => (err += d));
  const code = await runCli(argv, { stdout, stderr, stdin: new PassThrough(), env }, handlers);
  return { code, out, err };
}

export type Answer = (status: number, body: unknown, headers?: Record<string, string>) => void;

/**
 * A stand-in edge on a free port, closed when the test ends: `handle` gets each request once its body has arrived
 * (the body, and a JSON answer to send; `null` sends no body). Its URL.
 */
export async function standInEdge(handle: (req: IncomingMessage, body: Buffer, json: Answer, res: ServerResponse) => unknown): Promise<string> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => {});
    req.on("end", () => {
      const json: Answer = (status, body, headers = {}) =>
        void res.writeHead(status, { "content-type": "application/json", ...headers }).end(body === null ? undefined : JSON.stringify(body));
      void handle(req, Buffer.concat(chunks), json, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onTestFinished(() => new Promise<void>((r) => (server.close(() => r()), server.closeAllConnections())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
