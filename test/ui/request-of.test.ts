import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestOf } from "./helpers";

/** A server that counts the connections it was given and says which header each request came with. */
const server = createServer((req, res) => res.end(req.headers.connection ?? ""));
let connections = 0;
server.on("connection", () => connections++);
let url: string;
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("API calls of a test's browser context", () => {
  it("never go out on a connection an earlier call left idle (the edge may be closing it)", async () => {
    const context = { request: await request.newContext() };
    try {
      const before = connections;
      const answers: string[] = [];
      for (let i = 0; i < 3; i++) answers.push(await (await requestOf(context).get(url)).text());
      for (let i = 0; i < 3; i++) answers.push(await (await requestOf(context).post(url, { headers: { origin: url }, data: { n: i } })).text());
      expect(answers).toEqual(Array(6).fill("close"));
      expect(connections - before).toBe(6);
    } finally {
      await context.request.dispose();
    }
  });
});
