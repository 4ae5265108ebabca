/*
 * Refused request bodies are drained before the answer goes out (a "lingering close"); shared by every route
 * that may refuse a streamed body part-way (form uploads, upload parts).
 */

/** How much of a refused upload's remaining body is read and dropped before answering (see `lingering`). */
const LINGER_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 5_000;

/**
 * The request with a body whose `cancel()` (what the form reader calls when it refuses an upload part-way: an 11th
 * file, a non-video, a file over the limit) first reads and drops what is left of the body, up to LINGER_BYTES or
 * LINGER_MS, and only then cancels it — the "lingering close" of HTTP servers. workerd resets the client's
 * connection when a response goes out while the request body is half read and cancelled, without a `Connection:
 * close`; `wrangler dev`'s proxy keeps that connection in its pool and sends the next request on it, which fails
 * (503 "Your worker restarted mid-request", as POSTs are not retried). A body read to its end leaves the connection
 * reusable, and a client still sending gets the 400/413/415 instead of a reset. Beyond the bounds the upload is cut
 * off as before: we do not receive gigabytes to refuse them.
 */
export function lingering(req: Request): Request {
  if (!req.body) return req;
  const source = req.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await source.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeUp = new Promise<"time">((resolve) => (timer = setTimeout(() => resolve("time"), LINGER_MS)));
      try {
        for (let dropped = 0; dropped <= LINGER_BYTES; ) {
          const next = await Promise.race([source.read(), timeUp]);
          if (next === "time" || next.done) break;
          dropped += next.value.byteLength;
        }
      } catch {
        // The client went away while we drained: nothing left to be polite to.
      } finally {
        clearTimeout(timer);
      }
      await source.cancel(reason).catch(() => {});
    },
  });
  return new Request(req, { body });
}
