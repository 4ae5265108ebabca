/**
 * A `POST /api/jobs` body of one video of `mib` MiB (an MP4 header, then filler; 1 variation), produced 1 MiB at a
 * time as the request reads it, with its declared Content-Length (unless `declareLength: false`: sent chunked): a
 * large upload without holding it in memory.
 * Pass the result's fields to fetch (`duplex: "half"` is needed for a stream body).
 */
export function streamedVideoForm(mib: number, opts: { declareLength?: boolean } = {}): { body: ReadableStream<Uint8Array>; headers: Record<string, string>; duplex: "half" } {
  const boundary = `----vrstream${mib}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="variations"\r\n\r\n1\r\n--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n`,
  );
  const block = Buffer.alloc(1024 * 1024, 7);
  block.set([0, 0, 0, 0x18, ...Buffer.from("ftypisom"), 0, 0, 2, 0, ...Buffer.from("isomiso2")], 0);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  let n = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n === 0) c.enqueue(head);
      else if (n <= mib) c.enqueue(block);
      else {
        c.enqueue(tail);
        c.close();
      }
      n++;
    },
  });
  const headers: Record<string, string> = { "content-type": `multipart/form-data; boundary=${boundary}` };
  if (opts.declareLength !== false) headers["content-length"] = String(head.length + mib * block.length + tail.length);
  return { body, headers, duplex: "half" };
}
