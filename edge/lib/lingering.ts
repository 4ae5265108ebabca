/*
 * Request bodies are read to their end before the answer goes out (a "lingering close"): a body refused part-way
 * by a route that streams it (a form with an 11th file or a non-video, an upload part that runs long) and a body
 * no handler touched (401, 404, a refused header) alike.
 *
 * Why: workerd resets the client's connection when a response goes out while the request body is unread or was
 * cancelled half read, without a `Connection: close`; `wrangler dev`'s proxy keeps that connection in its pool and
 * sends the next request on it, which fails (503 "Your worker restarted mid-request", as POSTs are not retried).
 * Measured through wrangler dev: a part PUT answered 404 before its body was read broke the next request every
 * time; a part refused for running long about one time in sixty (the drain's read collided with the pipe's pending
 * one, below). A body read to its end leaves the connection reusable, and a client still sending gets the 4xx
 * instead of a reset. Beyond the bounds the body is cut off as before: we do not receive gigabytes to refuse them.
 */
import type { MiddlewareHandler } from "hono";

/** How much of a request's remaining body is read and dropped before answering. */
const LINGER_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 5_000;

/**
 * App-wide, outermost: a body no handler touched is read to its end before the answer. Bodies that were read
 * (fully, or in part by a route's own `lingeringBody`) are left alone, and so is one declared longer than the
 * bound: a 20 MB JSON body refused by its Content-Length got its 413 whole when untouched, and cut off mid-answer
 * when 16 MiB of it were read first.
 */
export function drainUnreadBodies(): MiddlewareHandler {
  return async (c, next) => {
    try {
      await next();
    } finally {
      const body = c.req.raw.body;
      const declared = c.req.header("content-length");
      if (body && !body.locked && !c.req.raw.bodyUsed && !(declared !== undefined && Number(declared) > LINGER_BYTES)) {
        const reader = body.getReader();
        await drain(() => reader.read());
      }
    }
  };
}

/**
 * For a route that streams its body and may refuse it part-way (forms, upload parts): the handler reads a body
 * whose `cancel()` first drains what is left, and whatever the handler did, the rest is drained before the answer.
 */
export function lingeringBody(): MiddlewareHandler {
  return async (c, next) => {
    if (!c.req.raw.body) return next();
    const { request, finish } = lingering(c.req.raw);
    c.req.raw = request;
    try {
      await next();
    } finally {
      await finish();
    }
  };
}

/** The request with that body, and `finish()`: drain (bounded), then cancel what is left. Idempotent. */
export function lingering(req: Request): { request: Request; finish: () => Promise<void> } {
  const source = req.body!.getReader();
  // The read a pull is waiting on. A pipe cancels while one is pending (its destination refused a chunk), and
  // workerd's request body allows one pending read at a time: the drain takes that read over rather than start a
  // second one, which throws and used to leave the body cancelled half read.
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  const read = () => (pending ??= source.read().finally(() => (pending = undefined)));
  let finishing: Promise<void> | undefined;
  const finish = () => (finishing ??= drain(read).then(() => source.cancel().catch(() => {})));
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: finish,
  });
  return { request: new Request(req, { body }), finish };
}

/** Reads and drops the rest of a body, up to LINGER_BYTES or LINGER_MS. */
async function drain(read: () => Promise<ReadableStreamReadResult<Uint8Array>>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeUp = new Promise<"time">((resolve) => (timer = setTimeout(() => resolve("time"), LINGER_MS)));
  try {
    for (let dropped = 0; dropped <= LINGER_BYTES; ) {
      const next = await Promise.race([read(), timeUp]);
      if (next === "time" || next.done) break;
      dropped += next.value.byteLength;
    }
  } catch {
    // The client went away while we drained: nothing left to be polite to.
  } finally {
    clearTimeout(timer);
  }
}
