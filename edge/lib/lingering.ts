/*
 * Request bodies are read to their end before the answer goes out (a "lingering close"), whatever the answer: a
 * refused upload part-way (an 11th file, a non-video, a part that runs long) and an answer given without touching
 * the body (401, 404, a refused header) alike.
 */
import type { MiddlewareHandler } from "hono";

/** How much of a refused request's remaining body is read and dropped before answering. */
const LINGER_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 5_000;

/**
 * Why: workerd resets the client's connection when a response goes out while the request body is unread or
 * cancelled half read, without a `Connection: close`; `wrangler dev`'s proxy keeps that connection in its pool and
 * sends the next request on it, which fails (503 "Your worker restarted mid-request", as POSTs are not retried) —
 * measured through wrangler dev: a PUT answered 404 before its body was read broke the next request every time, a
 * part refused for running long about one time in thirty. A body read to its end leaves the connection reusable,
 * and a client still sending gets the 4xx instead of a reset. Beyond the bounds the body is cut off as before: we
 * do not receive gigabytes to refuse them.
 */
export function lingeringBodies(): MiddlewareHandler {
  return async (c, next) => {
    const declared = c.req.header("content-length");
    // A body declared longer than the bound is left exactly as workerd gives it: draining 16 MiB of it would not
    // save the connection, and one read in part and then left (or cancelled) had its answer cut off mid-body
    // through wrangler dev, where an untouched one gets its answer whole.
    if (!c.req.raw.body || (declared !== undefined && Number(declared) > LINGER_BYTES)) return next();
    const { request, finish } = lingering(c.req.raw);
    c.req.raw = request;
    try {
      await next();
    } finally {
      await finish();
    }
  };
}

/**
 * The request with a body whose `cancel()` (what a pipe or the form reader calls when it refuses the body) first
 * drains what is left, and `finish()`, which does the same for a body nobody read to its end. Past the bounds the
 * rest is left unread, not cancelled: cancelling a request body makes workerd reset the connection before the
 * answer is out (the client sees ECONNRESET instead of its 4xx). A GET or HEAD with a body (workerd gives it one
 * when it carries a Content-Length) keeps its request: no handler reads it, and a Request of those methods cannot
 * be built with a body.
 */
export function lingering(req: Request): { request: Request; finish: () => Promise<void> } {
  const source = req.body!.getReader();
  // The read a pull is waiting on. A pipe cancels while one is pending (its destination refused a chunk), and
  // workerd's request body allows one pending read at a time: the drain takes that read over rather than start a
  // second one, which throws and used to leave the body cancelled half read.
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  const read = () => (pending ??= source.read().finally(() => (pending = undefined)));
  let finishing: Promise<void> | undefined;
  const finish = () => (finishing ??= drain(read));
  if (req.method === "GET" || req.method === "HEAD") return { request: req, finish };
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
