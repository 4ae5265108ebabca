import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { drainUnreadBodies, lingering, lingeringBody } from "../../../edge/lib/lingering";

/**
 * A request whose body is one of workerd's own streams (one pending read at a time, like a real request body),
 * fed chunk by chunk by the test; `log` records when each write was taken and when the body ends.
 */
function fedRequest(log: string[]) {
  const { readable, writable } = new IdentityTransformStream();
  const request = new Request("http://edge.test/x", { method: "PUT", body: readable });
  const writer = writable.getWriter();
  const send = async (label: string) => {
    // An IdentityTransformStream's write resolves once a read took the chunk.
    await writer.write(new TextEncoder().encode(label));
    log.push(`taken ${label}`);
  };
  const end = async () => {
    log.push("body ends");
    await writer.close();
  };
  return { request, send, end };
}

describe("lingering request bodies", () => {
  it("reads the rest of a body cancelled while a read is pending before the cancel completes", async () => {
    const log: string[] = [];
    const fed = fedRequest(log);
    const reader = lingering(fed.request).request.body!.getReader();
    const first = reader.read();
    await fed.send("a");
    expect(new TextDecoder().decode((await first).value)).toBe("a");
    // A pipe that refuses a chunk cancels while its next read is still waiting for bytes.
    void reader.read().catch(() => {});
    const cancelled = reader.cancel(new Error("refused")).then(() => log.push("cancelled"));
    await fed.send("b");
    await fed.send("c");
    await fed.end();
    await cancelled;
    expect(log).toEqual(["taken a", "taken b", "taken c", "body ends", "cancelled"]);
  });

  for (const [name, middleware] of [["app-wide", drainUnreadBodies], ["route", lingeringBody]] as const) {
    it(`answers a request whose handler never read the body only after reading it to its end (${name} middleware)`, async () => {
      const app = new Hono().use(middleware()).put("/x", (c) => c.json({ error: { code: "not_found", message: "No such upload" } }, 404));
      const log: string[] = [];
      const fed = fedRequest(log);
      const answered = Promise.resolve(app.request(fed.request)).then((res) => {
        log.push(`answered ${res.status}`);
        return res;
      });
      await fed.send("part");
      await fed.send("rest");
      await fed.end();
      await answered;
      expect(log).toEqual(["taken part", "taken rest", "body ends", "answered 404"]);
    });
  }

  it("passes a body through unchanged to a handler that reads it", async () => {
    const app = new Hono().use(drainUnreadBodies()).use(lingeringBody()).put("/x", async (c) => c.text(await c.req.text()));
    const res = await app.request("http://edge.test/x", { method: "PUT", body: "every byte" });
    expect(await res.text()).toBe("every byte");
  });
});
