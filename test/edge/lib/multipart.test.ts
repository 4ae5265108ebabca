import { describe, expect, it } from "vitest";
import { MultipartReader, multipartBoundary } from "../../../edge/lib/multipart";
import { formBody } from "../helpers";

/** A stream that delivers `bytes` in chunks of the given sizes (cycled), to split delimiters at every offset. */
function chunked(bytes: Uint8Array, sizes: number[]): ReadableStream<Uint8Array> {
  let at = 0;
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      const n = sizes[i++ % sizes.length]!;
      controller.enqueue(bytes.slice(at, at + n));
      at += n;
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>, boundary: string) {
  const reader = new MultipartReader(stream, boundary);
  const parts: { name: string; filename: string | null; contentType: string | null; body: Uint8Array }[] = [];
  for (let p = await reader.next(); p; p = await reader.next()) {
    const chunks: Uint8Array[] = [];
    for await (const c of reader.body()) chunks.push(c);
    const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of chunks) {
      body.set(c, o);
      o += c.length;
    }
    parts.push({ ...p, body });
  }
  return parts;
}

describe("MultipartReader", () => {
  // Data full of CR, LF, dashes and near-misses of the delimiter (which by contract never occurs in content).
  const tricky = new TextEncoder().encode("\r\n--\r\n-\r\n--x\r\n\r\n--boun\r\n--bounX\r\n--boun");
  const { body, contentType } = formBody(
    [
      { name: "variations", value: "7" },
      { name: "videos", filename: "a.mp4", bytes: tricky },
      { name: "videos", filename: "b.mp4", bytes: new Uint8Array(0) },
    ],
    "bound",
  );

  it("yields the same parts and bytes however the body is split into chunks", async () => {
    for (const sizes of [[1], [2], [3], [7], [13, 1, 5], [body.length]]) {
      const parts = await readAll(chunked(body, sizes), "bound");
      expect(parts.map((p) => [p.name, p.filename, p.contentType]), String(sizes)).toEqual([
        ["variations", null, null],
        ["videos", "a.mp4", "video/mp4"],
        ["videos", "b.mp4", "video/mp4"],
      ]);
      expect(new TextDecoder().decode(parts[0]!.body)).toBe("7");
      expect(parts[1]!.body).toEqual(tricky);
      expect(parts[2]!.body.length).toBe(0);
    }
  });

  it("skips a preamble, unread part bodies and the epilogue", async () => {
    const enc = new TextEncoder();
    const raw = enc.encode(
      "preamble to ignore\r\n--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nskipped\r\n" +
        "--b\r\nContent-Disposition: form-data; name=\"y\"\r\n\r\nkept\r\n--b--\r\nepilogue",
    );
    const reader = new MultipartReader(chunked(raw, [4]), "b");
    expect((await reader.next())!.name).toBe("x");
    expect((await reader.next())!.name).toBe("y");
    expect(await reader.text("y", 100)).toBe("kept");
    expect(await reader.next()).toBeNull();
  });

  it("decodes quoted, escaped and RFC 5987 file names", async () => {
    const enc = new TextEncoder();
    const raw = enc.encode(
      "--b\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"we \\\"ird\\\".mp4\"\r\n\r\n1\r\n" +
        "--b\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"x.mp4\"; filename*=UTF-8''%C3%A9t%C3%A9.mp4\r\n\r\n2\r\n" +
        "--b\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"ünï.mp4\"\r\n\r\n3\r\n--b--",
    );
    const parts = await readAll(chunked(raw, [5]), "b");
    expect(parts.map((p) => p.filename)).toEqual(['we "ird".mp4', "été.mp4", "ünï.mp4"]);
  });

  it("rejects truncated bodies and parts without a disposition as 400s", async () => {
    const enc = new TextEncoder();
    await expect(readAll(chunked(enc.encode("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nno end"), [3]), "b")).rejects.toMatchObject({ status: 400 });
    await expect(readAll(chunked(enc.encode("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--"), [3]), "b")).rejects.toMatchObject({ status: 400 });
    await expect(readAll(chunked(enc.encode("no boundary at all"), [3]), "b")).rejects.toMatchObject({ status: 400 });
  });

  it("reads the boundary from the Content-Type, quoted or not", () => {
    expect(multipartBoundary("multipart/form-data; boundary=----abc")).toBe("----abc");
    expect(multipartBoundary('multipart/form-data; charset=utf-8; boundary="a b"')).toBe("a b");
    expect(multipartBoundary("application/json")).toBeNull();
    expect(multipartBoundary("multipart/form-data")).toBeNull();
  });
});
