import { asLocalError } from "./local-errors";
import { open, stat, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { ticketHeaders, type Ticket } from "../db/tickets";
import { delay } from "./delay";
import { openRegularFile } from "./workdir";

/** An edge blob call failed. `transient` errors (network, 5xx, 429) are worth retrying; 4xx are not. */
export class BlobError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly transient: boolean,
    /** The edge's error code (`{ error: { code } }`), when it answered with one. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The edge refused the runner's own token (a rotated or mistyped RUNNER_TOKEN): the runner's setup, never the video's. */
export const isTokenRefused = (err: unknown): err is BlobError => err instanceof BlobError && err.status === 401;

export interface BlobClientOptions {
  edgeUrl: string;
  token: string;
  /** Outputs up to this size go up in one PUT; bigger ones use multipart (production caps a body near 100 MB). */
  singlePutMaxBytes?: number;
  /** Multipart part size (R2: ≥ 5 MiB, all parts but the last the same size). */
  partBytes?: number;
  /**
   * A call that makes no progress for this long is abandoned as a transient failure (default 60 s): a wedged
   * edge must not hold a variation forever. Uploads get this plus one second per MiB of body.
   */
  stallMs?: number;
}

export interface StoredObject {
  key: string;
  size: number;
  uploaded: string;
}

const MiB = 1024 * 1024;
/** Tries of one upload PUT (see sendBody): with the backoff, about 3.5 s of edge trouble is ridden out in place. */
export const UPLOAD_TRIES = 4;
/**
 * How long a cleanup call (deleting or aborting this attempt's unrecorded upload) may wait: a stop, e.g. a shutdown
 * inside Docker's 10 s, must not wait on an edge that hangs; what it leaves behind is the orphan rules' to remove.
 */
export const CLEANUP_TIMEOUT_MS = 2000;
const UPLOAD_BACKOFF_MS = 500;

/**
 * Client for the edge's runner-only blob endpoints (`/internal/...`, Bearer RUNNER_TOKEN). Object calls carry the
 * ticket of the variation the runner holds (db/tickets.ts): the edge serves only that variation's objects.
 */
export class BlobClient {
  private readonly base: string;
  readonly singlePutMaxBytes: number;
  readonly partBytes: number;
  readonly stallMs: number;

  /** The edge's last answer refused this runner's token (until an answer accepts it): /healthz reports it. */
  tokenRefused = false;

  constructor(private readonly opts: BlobClientOptions) {
    this.base = opts.edgeUrl.replace(/\/+$/, "");
    this.singlePutMaxBytes = opts.singlePutMaxBytes ?? 90 * MiB;
    this.partBytes = opts.partBytes ?? 64 * MiB;
    this.stallMs = opts.stallMs ?? 60_000;
  }

  private objectUrl(key: string): string {
    return `${this.base}/internal/objects/${key.split("/").map(encodeURIComponent).join("/")}`;
  }

  private async call(
    url: string,
    init: RequestInit & { duplex?: "half" },
    what: string,
    timeoutMs = this.stallMs,
    /** Set for a body that reports its progress: the timeout then counts from the last chunk sent, not from the start. */
    progress?: Progress,
  ): Promise<Response> {
    let res: Response;
    // The timeout covers sending the body and waiting for the answer's headers, and reading the answer of any call
    // but a successful GET: a download of a large source may take long, and its progress is watched chunk by chunk
    // instead.
    const ctl = new AbortController();
    const caller = init.signal;
    if (caller?.aborted) ctl.abort(caller.reason);
    const onAbort = () => ctl.abort(caller!.reason);
    caller?.addEventListener("abort", onAbort, { once: true });
    // A GET's body is read after this returns (a download watches it chunk by chunk), so its caller's abort must
    // still reach the fetch then; its signal is the download's own, short-lived. Any other call's answer (small JSON)
    // is read here, under the timeout and the caller's abort, and the listener is removed: the caller's signal may
    // live as long as the runner (the job thumbnails'), and a listener left on it per call grew without bound.
    const bodyReadLater = (init.method ?? "GET") === "GET";
    let timedOut = false;
    const fire = () => {
      timedOut = true;
      ctl.abort();
    };
    let timer = setTimeout(fire, timeoutMs);
    // A slow uplink is not a wedged edge: every chunk the body hands to the connection starts the wait again.
    if (progress) {
      progress.onChunk = () => {
        if (timedOut) return;
        clearTimeout(timer);
        timer = setTimeout(fire, timeoutMs);
      };
    }
    try {
      res = await fetch(url, { ...init, signal: ctl.signal, headers: { authorization: `Bearer ${this.opts.token}`, ...init.headers } });
      if (!bodyReadLater || !res.ok) res = await buffered(res);
    } catch (err) {
      if (caller?.aborted) throw err;
      if (timedOut) throw new BlobError(`${what}: no ${progress ? "progress" : "answer"} from the edge within ${timeoutMs} ms`, null, true);
      throw new BlobError(`${what}: edge unreachable (${(err as Error).message})`, null, true);
    } finally {
      clearTimeout(timer);
      if (progress) progress.onChunk = () => {};
      if (!bodyReadLater) caller?.removeEventListener("abort", onAbort);
    }
    if (!res.ok) {
      let detail = "";
      let code: string | undefined;
      try {
        const body = (await res.json()) as { error?: { message?: string; code?: string } };
        detail = body.error?.message ?? "";
        code = typeof body.error?.code === "string" ? body.error.code : undefined;
      } catch {
        // not JSON
      }
      if (res.status === 401) this.tokenRefused = true;
      // digest_mismatch: the bytes the edge received are not the file's (changed on the way): sending again can fix it.
      const transient = res.status >= 500 || res.status === 429 || code === "digest_mismatch";
      throw new BlobError(`${what}: HTTP ${res.status}${detail ? ` ${detail}` : ""}`, res.status, transient, code);
    }
    this.tokenRefused = false;
    return res;
  }

  /**
   * Streams an object to `dest`. A connection that breaks mid-way is resumed with a Range request (up to 3
   * times) instead of starting over. Returns the byte count. `ticket` may be a function, asked before each
   * request: a shared download resumes with the ticket of a variation still waiting for it.
   */
  async download(key: string, dest: string, signal?: AbortSignal, ticket?: Ticket | (() => Ticket | undefined)): Promise<number> {
    let have = 0;
    let total: number | null = null;
    for (let attempt = 0; ; attempt++) {
      try {
        const headers: Record<string, string> = {
          ...ticketHeaders(typeof ticket === "function" ? ticket() : ticket),
          ...(have > 0 ? { range: `bytes=${have}-` } : {}),
        };
        // Aborted when the caller stops, or when the body stalls (no chunk for stallMs).
        const stalled = new AbortController();
        const body = new AbortController();
        const onAbort = () => body.abort();
        signal?.addEventListener("abort", onAbort, { once: true });
        stalled.signal.addEventListener("abort", onAbort, { once: true });
        const res = await this.call(this.objectUrl(key), { headers, signal: body.signal }, `download ${key}`);
        if (have > 0 && res.status !== 206) {
          have = 0; // the edge ignored the range: start over
        }
        if (total === null) {
          const range = /\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
          total = range ? Number(range[1]) : Number(res.headers.get("content-length") ?? NaN);
        }
        if (!res.body) throw new BlobError(`download ${key}: empty body`, res.status, true);
        // Chunk by chunk, each written before the next is read: after a broken connection the file holds
        // exactly what arrived, so the retry can ask for the rest with a Range.
        const fh = await open(dest, have > 0 ? "a" : "w");
        let stallTimer = setTimeout(() => stalled.abort(), this.stallMs);
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            clearTimeout(stallTimer);
            await writeFully(fh, chunk);
            have += chunk.length;
            stallTimer = setTimeout(() => stalled.abort(), this.stallMs);
          }
        } catch (err) {
          if (stalled.signal.aborted && !signal?.aborted) {
            throw new BlobError(`download ${key}: stalled for ${this.stallMs} ms at ${have} bytes`, null, true);
          }
          throw err;
        } finally {
          clearTimeout(stallTimer);
          signal?.removeEventListener("abort", onAbort);
          await fh.close();
        }
        if (Number.isFinite(total) && have !== total) {
          throw new BlobError(`download ${key}: got ${have} of ${total} bytes`, null, true);
        }
        await assertSizeOnDisk(dest, have, `download ${key}`);
        return have;
      } catch (err) {
        if (signal?.aborted) throw err;
        // The runner's own disk failing (full, read-only) is not the edge's fault: no retry, no "transient".
        if (asLocalError(err, "download")) throw err;
        const transient = err instanceof BlobError ? err.transient : true;
        if (!transient || attempt >= 3) throw err instanceof BlobError ? err : new BlobError(`download ${key}: ${(err as Error).message}`, null, true);
        try {
          have = (await stat(dest)).size;
        } catch {
          have = 0;
        }
        // Every byte arrived and only the end of the stream broke: a Range for the rest would ask past the end (416,
        // not transient) and fail a source that is complete on disk.
        if (total !== null && Number.isFinite(total) && have === total) return have;
        await delay(200 * 2 ** attempt);
      }
    }
  }

  /** Uploads a local file: one streamed PUT when small enough, else R2 multipart (aborted on failure). */
  /** `sha256`: the file's digest; on a single PUT the edge has R2 refuse bytes that differ (digest_mismatch, sent again). */
  async upload(key: string, file: string, signal?: AbortSignal, ticket?: Ticket, sha256?: string): Promise<{ size: number }> {
    // FFmpeg made the file: only a regular file is read, and every request reads this one opened file.
    const fh = await openRegularFile(file);
    try {
      return await this.uploadFrom(fh, key, signal, ticket, sha256);
    } finally {
      await fh.close();
    }
  }

  private async uploadFrom(file: FileHandle, key: string, signal?: AbortSignal, ticket?: Ticket, sha256?: string): Promise<{ size: number }> {
    const { size } = await file.stat();
    const t = ticketHeaders(ticket);
    if (size <= this.singlePutMaxBytes) {
      const checked: Record<string, string> = sha256 ? { "x-content-sha256": sha256 } : {};
      await this.sendBody(
        this.objectUrl(key),
        (progress) => ({ method: "PUT", body: fileBody(file, 0, size, progress), duplex: "half", headers: { ...t, ...checked, "content-length": String(size) }, signal }),
        `upload ${key}`,
      );
      return { size };
    }
    const q = `key=${encodeURIComponent(key)}`;
    // Sent again after a blip like the parts: a create whose answer was lost leaves an upload nobody completes, which
    // the edge has on record (multipart_uploads) and its lifecycle rule aborts a day later.
    const created = await this.sendBody(
      `${this.base}/internal/uploads`,
      () => ({ method: "POST", body: JSON.stringify({ key }), headers: { ...t, "content-type": "application/json" }, signal }),
      `multipart create ${key}`,
    );
    const { uploadId } = (await created.json()) as { uploadId: string };
    const uploadUrl = `${this.base}/internal/uploads/${encodeURIComponent(uploadId)}`;
    try {
      const parts: { partNumber: number; etag: string }[] = [];
      for (let offset = 0, n = 1; offset < size; offset += this.partBytes, n++) {
        const len = Math.min(this.partBytes, size - offset);
        const res = await this.sendBody(
          `${uploadUrl}/parts/${n}?${q}`,
          (progress) => ({ method: "PUT", body: fileBody(file, offset, len, progress), duplex: "half", headers: { ...t, "content-length": String(len) }, signal }),
          `multipart part ${n} of ${key}`,
        );
        parts.push((await res.json()) as { partNumber: number; etag: string });
      }
      // Sent again after a blip too. One that landed but whose answer was lost is recognised by the edge from the
      // object of this size at this attempt's key; without such an object it answers no_such_upload and this attempt
      // fails (its cleanup removes anything unrecorded) rather than record an output it cannot see.
      await this.sendBody(
        `${uploadUrl}/complete?${q}`,
        () => ({ method: "POST", body: JSON.stringify({ parts, size }), headers: { ...t, "content-type": "application/json" }, signal }),
        `multipart complete ${key}`,
      );
      return { size };
    } catch (err) {
      // Abort so no half-assembled upload lingers; the edge's abandoned-multipart rule is only the backstop.
      await this.call(`${uploadUrl}?${q}`, { method: "DELETE", headers: t }, `multipart abort ${key}`, CLEANUP_TIMEOUT_MS).catch(() => {});
      throw err;
    }
  }

  /**
   * One request of an upload (a PUT of a file's bytes — a whole object or one part —, a multipart create or
   * complete), sent again after a transient failure (a reset connection, a 5xx, no answer): UPLOAD_TRIES in all, UPLOAD_BACKOFF_MS doubling in between, so a blip or a short
   * edge restart is ridden out in place. Before, one reset threw a verified encode away and requeued it. Safe to
   * repeat: the key is this attempt's own (db/keys.ts) and a part number names its part, so a PUT that did land is
   * only written again with the same bytes. A 403 (the lease is gone) or another 4xx is not retried.
   */
  private async sendBody(
    url: string,
    init: (progress: Progress) => RequestInit & { duplex?: "half" },
    what: string,
  ): Promise<Response> {
    for (let i = 1; ; i++) {
      const progress: Progress = { onChunk: () => {} };
      const req = init(progress);
      try {
        // stallMs without a chunk sent, or after the last one without an answer: the time a part may take is
        // not capped (before, a total of stallMs + 1 s per MiB failed every large output on an uplink under 1 MiB/s).
        return await this.call(url, req, what, this.stallMs, progress);
      } catch (err) {
        if (req.signal?.aborted || !(err instanceof BlobError) || !err.transient || i >= UPLOAD_TRIES) throw err;
        await delay(UPLOAD_BACKOFF_MS * 2 ** (i - 1), req.signal ?? undefined);
      }
    }
  }

  /** The edge's clock (Unix ms); a 401 here says the edge refuses this runner's token, like any other call. */
  async edgeClock(timeoutMs = 10_000): Promise<number> {
    // Its own signal: a GET's answer is read after call() returns, and a stalled one must not hang the probe.
    let res: Response;
    try {
      res = await this.call(`${this.base}/internal/clock`, { method: "GET", signal: AbortSignal.timeout(timeoutMs) }, "clock", timeoutMs);
    } catch (err) {
      // An edge older than this route answers 404 from behind its token check: the token was taken.
      if (err instanceof BlobError && err.status === 404) this.tokenRefused = false;
      throw err;
    }
    const { now } = (await res.json()) as { now: unknown };
    if (typeof now !== "number" || !Number.isFinite(now)) throw new BlobError("clock: the edge answered no time", res.status, true);
    return now;
  }

  /** A job's stored outputs; the edge lists them only once the job is finished (orphan sweep). */
  async list(prefix: string): Promise<StoredObject[]> {
    const res = await this.call(`${this.base}/internal/objects?prefix=${encodeURIComponent(prefix)}`, {}, `list ${prefix}`);
    return ((await res.json()) as { objects: StoredObject[] }).objects;
  }

  /** Without a ticket, the edge deletes only outputs nobody can record any more (see docs/runner.md). */
  async delete(key: string, ticket?: Ticket, timeoutMs = this.stallMs): Promise<void> {
    await this.call(this.objectUrl(key), { method: "DELETE", headers: ticketHeaders(ticket) }, `delete ${key}`, timeoutMs);
  }
}

/**
 * Writes all of `data`: a write on a disk that fills mid-chunk stores part of it and reports no error, only a
 * shorter count. Ignoring that count left a truncated download taken for the whole source, then failed for good as
 * "not a decodable video"; writing the rest makes the disk's ENOSPC surface as the runner's own error.
 */
async function writeFully(fh: Pick<FileHandle, "write">, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.byteLength; ) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done);
    if (bytesWritten <= 0) throw Object.assign(new Error("the disk took no bytes of a write"), { code: "EIO" });
    done += bytesWritten;
  }
}

/** What counted as written must be what the disk holds: anything else is this machine's fault, never the video's. */
async function assertSizeOnDisk(path: string, expected: number, what: string): Promise<void> {
  const { size } = await stat(path);
  if (size !== expected) throw Object.assign(new Error(`${what}: ${size} bytes on disk of ${expected} written`), { code: "EIO" });
}

/** Told of each chunk of a request body as the connection takes it (BlobClient's upload timeout). */
interface Progress {
  onChunk: () => void;
}

function fileBody(file: FileHandle, start: number, length: number, progress?: Progress): BodyInit {
  // A known Content-Length plus a streamed body: R2's put() needs the length and nothing is buffered whole.
  const stream = file.createReadStream({ start, end: start + length - 1, highWaterMark: MiB, autoClose: false });
  const web = Readable.toWeb(stream) as unknown as ReadableStream<Uint8Array>;
  if (!progress) return web as unknown as BodyInit;
  return web.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        progress.onChunk();
        controller.enqueue(chunk);
      },
    }),
  ) as unknown as BodyInit;
}

/** The same answer with its body read: an edge that stalls mid-answer then hits the caller's timeout or abort. */
async function buffered(res: Response): Promise<Response> {
  const body = await res.arrayBuffer();
  const init = { status: res.status, statusText: res.statusText, headers: res.headers };
  return new Response([101, 204, 205, 304].includes(res.status) ? null : body, init);
}
