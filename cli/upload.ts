import { open, stat } from "node:fs/promises";
import { basename, extname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { call, realSleep, timeout, type Api, type Job, type Schemas } from "./client";
import { configDir, readJson, updatePrivateJson } from "./config";
import type { CliEnv, ConfigPlace } from "./env";
import { CliError, EXIT, isNetworkError } from "./errors";
import type { Progress } from "./progress";
import { SubmitKeys, submitFingerprint } from "./submit-keys";

const PART_TRIES = 5;
const PART_TIMEOUT_MS = 5 * 60_000;

export interface LocalFile {
  path: string;
  name: string;
  size: number;
  mtimeMs: number;
}

export interface UploadReport {
  file: string;
  via: "form" | "multipart";
  size: number;
  uploadId?: string;
  /** Multipart only: parts sent by this run, and parts a previous run had already stored (resumed). */
  partsSent?: number[];
  partsSkipped?: number[];
  /** Multipart only: this run went on with an upload an earlier run recorded (uploads.json). */
  resumed?: boolean;
}

export interface UploadDeps {
  api: Api;
  url: string;
  /** Parsed once when the command started (cli/env.ts). */
  env: CliEnv;
  progress: Progress;
  /** Waits between retries (tests pass a fake). */
  sleep?: (ms: number) => Promise<void>;
}

export async function statFiles(paths: string[]): Promise<LocalFile[]> {
  return Promise.all(
    paths.map(async (p) => {
      const path = resolve(p);
      const s = await stat(path).catch(() => null);
      if (!s) throw new CliError(`no such file: ${p}`, EXIT.failed, "no_such_file");
      if (!s.isFile()) throw new CliError(`not a file: ${p}`, EXIT.failed, "not_a_file");
      if (s.size === 0) throw new CliError(`empty file: ${p}`, EXIT.failed, "empty_file");
      return { path, name: basename(path), size: s.size, mtimeMs: Math.trunc(s.mtimeMs) };
    }),
  );
}

const MIME: Record<string, string> = {
  ".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime", ".webm": "video/webm", ".mkv": "video/x-matroska",
};
const mimeOf = (name: string) => MIME[extname(name).toLowerCase()] ?? "application/octet-stream";

/** Every file in one job: one multipart/form-data POST when they are small together, else all through the upload API. */
export async function uploadAndCreateJob(
  deps: UploadDeps,
  files: LocalFile[],
  variations: number,
  effects?: Schemas["EffectsRequest"],
): Promise<{ job: Job; uploads: UploadReport[] }> {
  const total = files.reduce((n, f) => n + f.size, 0);
  // One key for every try of this job's POST, and for a re-run of this command after an interrupted one: a try whose
  // answer was lost made the job, and the next one is answered with it (Idempotent-Replayed) instead of making a
  // second.
  const fingerprint = submitFingerprint(deps.url, files, variations, effects);
  const { key, reused } = await SubmitKeys.claim(deps.env, fingerprint);
  const answered = () => SubmitKeys.done(deps.env, fingerprint, key);
  // The same command run again is a new request to its user: a job an earlier run's key found rather than made is
  // said so (not one this run's own lost try made: that is the job asked for).
  const noteReplay = (job: Job, response: Response) => {
    if (!reused || response.headers.get("idempotent-replayed") !== "true") return;
    deps.progress.log(
      `job ${job.id} was created at ${job.createdAt} by an earlier try of this submit whose answer was lost (same server, files and options); ` +
        "no new job was made: run the command again for another one",
    );
  };
  // Over VIDEO_REFRESHER_MULTIPART_BYTES (64 MiB unless set): every file through the upload API.
  if (total <= deps.env.VIDEO_REFRESHER_MULTIPART_BYTES) {
    const { job, response } = await createJobFromForm(deps, files, variations, effects, key);
    noteReplay(job, response);
    await answered();
    return { job, uploads: files.map((f) => ({ file: f.path, via: "form" as const, size: f.size })) };
  }
  const create = (ups: UploadReport[], idempotencyKey: string) =>
    createWithRetries(deps, () =>
      call(
        deps.url,
        deps.api.POST("/api/jobs", {
          body: { uploads: ups.map((u) => u.uploadId!), variations, ...(effects ? { effects } : {}) },
          headers: { "Idempotency-Key": idempotencyKey },
          signal: timeout(),
        }),
      ),
    );
  const forget = async () => {
    const state = await UploadState.load(deps.env);
    for (const f of files) state.remove(deps.url, f);
    await state.save();
  };
  let uploads: UploadReport[] = [];
  for (const f of files) uploads.push(await uploadLargeFile(deps, f));
  let made: { data: Job; response: Response };
  try {
    made = await create(uploads, key);
  } catch (err) {
    // A completed upload recorded by an earlier run that never got its job made (refused, say over quota, or
    // interrupted after the server made it) is used (409) or, a day later, gone (400): every later submit of the
    // file was refused the same way, for good. Forget those records and send the files once more.
    if (!uploads.some((u) => u.resumed) || !staleUpload(err)) throw err;
    const earlier = (err as CliError).extra?.jobId;
    deps.progress.log(`an earlier run's upload can no longer feed a job (${(err as Error).message}${earlier ? `; it fed job ${earlier}` : ""}); uploading again`);
    // Only the files whose upload an earlier run recorded: this run's own fresh uploads are still unused, and
    // sending them again would leave the first copies counting against the owner's quota for a day.
    const state = await UploadState.load(deps.env);
    for (const [i, f] of files.entries()) if (uploads[i]!.resumed) state.remove(deps.url, f);
    await state.save();
    const again: UploadReport[] = [];
    for (const [i, f] of files.entries()) again.push(uploads[i]!.resumed ? await uploadLargeFile(deps, f) : uploads[i]!);
    uploads = again;
    // The same key: the refused POST recorded nothing under it (only a job holds a key), and it is the one saved in
    // submits.json, so a re-run after this create's answer is lost is answered with this job, not a second one.
    made = await create(uploads, key);
  }
  const job = made.data;
  noteReplay(job, made.response);
  await forget();
  await answered();
  return { job, uploads };
}

const fileChanged = (f: LocalFile) => new CliError(`${f.name} changed while it was being sent`, EXIT.failed, "file_changed");

/** The job POST refused an upload as used by a job, or unknown (the cron deleted it). */
function staleUpload(err: unknown): boolean {
  if (!(err instanceof CliError)) return false;
  return err.code === "upload_used" || (err.status === 400 && /unknown upload/.test(err.message));
}

// ---------------------------------------------------------------------------------------------------------------
// Small files: one streamed multipart/form-data request (variations and effects first, so bad ones are refused early).

function quoteFilename(name: string): string {
  return name.replace(/"/g, "%22").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
}

/** Tries of a request that names its work (an Idempotency-Key, or a pause: a repeat is answered, not done twice). */
const KEYED_TRIES = 3;

/**
 * A request every try of which is the same request (it carries an Idempotency-Key: a job, an upload, a reopen; or a
 * pause), tried again as `retryable` says; each retry is said through `log`.
 */
export function withKeyedRetries<T>(send: () => Promise<T>, opts: { what: string; log: (line: string) => void; sleep?: (ms: number) => Promise<void> }): Promise<T> {
  return withRetries(send, {
    tries: KEYED_TRIES,
    baseMs: 1000,
    sleep: opts.sleep ?? realSleep,
    onRetry: (attempt, err) => opts.log(`${opts.what}: ${(err as Error).message}; trying again (${attempt + 1} of ${KEYED_TRIES})`),
  });
}

const createWithRetries = <T>(deps: UploadDeps, send: () => Promise<T>, what = "creating the job") =>
  withKeyedRetries(send, { what, log: (line) => deps.progress.log(line), sleep: deps.sleep });

async function createJobFromForm(
  deps: UploadDeps,
  files: LocalFile[],
  variations: number,
  effects: Schemas["EffectsRequest"] | undefined,
  key: string,
): Promise<{ job: Job; response: Response }> {
  const boundary = `----video-refresher-${randomBytes(12).toString("hex")}`;
  const field = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const head = Buffer.from(field("variations", String(variations)) + (effects ? field("effects", JSON.stringify(effects)) : ""));
  const fileHeads = files.map((f) =>
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="videos"; filename="${quoteFilename(f.name)}"\r\nContent-Type: ${mimeOf(f.name)}\r\n\r\n`,
    ),
  );
  const tail = Buffer.from(`--${boundary}--\r\n`);
  const length = head.length + tail.length + files.reduce((n, f, i) => n + fileHeads[i]!.length + f.size + 2, 0);
  const bars = files.map((f) => deps.progress.bar(`upload ${f.name}`, f.size));

  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield head;
    for (const [i, f] of files.entries()) {
      yield fileHeads[i]!;
      const fh = await open(f.path, "r");
      try {
        let sent = 0;
        for await (const chunk of fh.createReadStream({ highWaterMark: 256 * 1024 })) {
          const buf = chunk as Buffer;
          sent += buf.length;
          // A file that grew would overrun the announced Content-Length: stop before sending a byte too many.
          if (sent > f.size) break;
          bars[i]!.update(sent);
          yield buf;
        }
        if (sent !== f.size) throw fileChanged(f);
      } finally {
        await fh.close();
      }
      yield Buffer.from("\r\n");
    }
    yield tail;
  }
  // How long a form upload may take no chunk, or wait for its answer after the last.
  const stallMs = deps.env.VIDEO_REFRESHER_FORM_STALL_MS;
  const { data: job, response } = await createWithRetries(deps, async () => {
    // A stream is read once: every try streams the files again. A try that takes no chunk for stallMs, or gets no
    // answer that long (plus a second per MiB) after its last chunk, is given up as a timeout (a wedged edge must not hold the command
    // forever) and tried again like a dropped connection: the key makes that safe.
    const stalled = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const arm = (ms: number) => {
      clearTimeout(timer);
      if (!settled) timer = setTimeout(() => stalled.abort(new DOMException(`no progress for ${ms} ms`, "TimeoutError")), ms);
    };
    const iterator = chunks();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        arm(stallMs);
        const next = await iterator.next();
        if (next.done) {
          // What the socket still buffers has to go out and the edge has to store the files: a second per MiB more.
          arm(stallMs + Math.ceil(length / (1024 * 1024)) * 1000);
          controller.close();
        } else controller.enqueue(next.value);
      },
      async cancel() {
        await iterator.return(undefined);
      },
    });
    arm(stallMs);
    try {
      return await call(
        deps.url,
        deps.api.POST("/api/jobs", {
          // The typed body describes the form's fields; what goes on the wire is the stream built above.
          body: { videos: files.map((f) => f.name), variations, ...(effects ? { effects: JSON.stringify(effects) } : {}) },
          bodySerializer: () => body as unknown as string,
          headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(length), "Idempotency-Key": key },
          duplex: "half",
          signal: stalled.signal,
        } as Parameters<Api["POST"]>[1] & { duplex: "half" }),
      );
    } finally {
      settled = true;
      clearTimeout(timer);
    }
  });
  return { job, response };
}

// ---------------------------------------------------------------------------------------------------------------
// Large files: R2 multipart through the edge, resumable. The API has no route listing an upload's stored parts,
// so the parts each run got a 200 for are recorded locally (uploads.json in the config dir), keyed by server +
// absolute path + size + mtime; a re-run of the same command sends only the others.

interface UploadEntry {
  uploadId: string;
  partSize: number;
  partCount: number;
  parts: number[];
  completed: boolean;
  startedAt: string;
}

export class UploadState {
  /** The records this process read for change, set or removed: the only ones its saves write. */
  private readonly touched = new Set<string>();

  private constructor(
    private readonly file: string,
    private readonly entries: Record<string, UploadEntry>,
  ) {}

  static async load(env: ConfigPlace): Promise<UploadState> {
    const file = join(configDir(env), "uploads.json");
    return new UploadState(file, (await readJson<Record<string, UploadEntry>>(file)) ?? {});
  }

  static key(url: string, f: LocalFile): string {
    return `${url} ${f.path} ${f.size} ${f.mtimeMs}`;
  }

  /** The record, to be changed in place and saved. */
  get(url: string, f: LocalFile): UploadEntry | undefined {
    const key = UploadState.key(url, f);
    if (this.entries[key]) this.touched.add(key);
    return this.entries[key];
  }

  set(url: string, f: LocalFile, entry: UploadEntry): void {
    const key = UploadState.key(url, f);
    this.entries[key] = entry;
    this.touched.add(key);
  }

  remove(url: string, f: LocalFile): void {
    const key = UploadState.key(url, f);
    delete this.entries[key];
    this.touched.add(key);
  }

  private saving: Promise<unknown> = Promise.resolve();

  /**
   * Writes this process's records into what the file holds now: another `submit` running beside this one records
   * its own uploads there meanwhile, and a copy read at this one's start must not overwrite them. Serialised too:
   * parts finishing together must not interleave their writes.
   */
  save(): Promise<void> {
    const mine = Object.fromEntries([...this.touched].map((k) => [k, this.entries[k] ? structuredClone(this.entries[k]) : null]));
    const next = this.saving.then(() =>
      updatePrivateJson<Record<string, UploadEntry>>(this.file, (now = {}) => {
        for (const [k, e] of Object.entries(mine)) {
          if (e) now[k] = e;
          else delete now[k];
        }
        return now;
      }),
    );
    this.saving = next.catch(() => {});
    return next.then(() => {});
  }
}

/** Parts sent at once: VIDEO_REFRESHER_PART_CONCURRENCY, or one at a time when the test hook is to halt after N. */
function partConcurrency(env: CliEnv): number {
  return env.VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS > 0 ? 1 : env.VIDEO_REFRESHER_PART_CONCURRENCY;
}

/**
 * Whether a failed request is worth another try: network trouble, 408, 5xx and a 429 that asks to wait
 * (`rate_limited`, a twin's `request_in_progress`). Not 429 `quota_exceeded`: an answer (active jobs, queued
 * variations) that only runners' work changes, not a short wait.
 */
export function retryable(err: unknown): boolean {
  if (err instanceof CliError) {
    const s = err.status;
    return err.exitCode === EXIT.network || (s !== undefined && (s >= 500 || s === 408 || (s === 429 && err.code !== "quota_exceeded")));
  }
  return isNetworkError(err);
}

/** Runs `fn` up to `tries` times with exponential backoff (baseMs, 2×, 4×, … plus jitter) on retryable errors. */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T>,
  opts: {
    tries: number;
    baseMs: number;
    /** Default: a real wait. */
    sleep?: (ms: number) => Promise<void>;
    onRetry?: (attempt: number, err: unknown, waitMs: number) => void;
    /** Worth another try besides what `retryable` says (e.g. a code one route uses for "send it again"). */
    alsoRetry?: (err: unknown) => boolean;
  },
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= opts.tries || !(retryable(err) || opts.alsoRetry?.(err))) throw err;
      const waitMs = opts.baseMs * 2 ** (attempt - 1) * (1 + Math.random() * 0.2);
      opts.onRetry?.(attempt, err, waitMs);
      await (opts.sleep ?? realSleep)(waitMs);
    }
  }
}

async function uploadLargeFile(deps: UploadDeps, f: LocalFile, restarted = false): Promise<UploadReport> {
  const { api, url, progress } = deps;
  const state = await UploadState.load(deps.env);
  let entry = state.get(url, f);
  const resumed = entry !== undefined;
  if (!entry) {
    // One key for every try: a try whose answer was lost opened the upload, and the next is answered with it
    // instead of opening a second that would count against the open uploads and storage for a day.
    const key = randomBytes(16).toString("hex");
    const { data } = await createWithRetries(deps, () =>
      call(url, api.POST("/api/uploads", { body: { filename: f.name, size: f.size }, headers: { "Idempotency-Key": key }, signal: timeout() })),
      `starting the upload of ${f.name}`,
    );
    entry = { uploadId: data.id, partSize: data.partSize, partCount: data.partCount, parts: [], completed: false, startedAt: new Date().toISOString() };
    state.set(url, f, entry);
    await state.save();
  }
  const skipped = [...entry.parts].sort((a, b) => a - b);
  if (resumed) progress.log(`${f.name}: resuming upload ${entry.uploadId} (${skipped.length}/${entry.partCount} parts already stored)`);
  const bar = progress.bar(`upload ${f.name}`, f.size);
  const partBytes = (n: number) => Math.min(entry.partSize, f.size - (n - 1) * entry.partSize);
  bar.update(skipped.reduce((s, n) => s + partBytes(n), 0));

  const sent: number[] = [];
  if (!entry.completed) {
    const todo = Array.from({ length: entry.partCount }, (_, i) => i + 1).filter((n) => !entry.parts.includes(n));
    const haltAfter = deps.env.VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS;
    const fh = await open(f.path, "r");
    try {
      const sendPart = async (n: number) => {
        const bytes = Buffer.alloc(partBytes(n));
        const { bytesRead } = await fh.read(bytes, 0, bytes.length, (n - 1) * entry.partSize);
        if (bytesRead !== bytes.length) throw fileChanged(f);
        await withRetries(
          () =>
            call(
              url,
              api.PUT("/api/uploads/{id}/parts/{n}", {
                params: { path: { id: entry.uploadId, n } },
                body: bytes as unknown as string,
                bodySerializer: (b) => b as unknown as string,
                // The length lets a 401 after a newer login send the part again (cli/client.ts followingLogin).
                headers: { "content-type": "application/octet-stream", "content-length": String(bytes.length) },
                signal: timeout(PART_TIMEOUT_MS),
              }),
            ),
          {
            tries: PART_TRIES,
            baseMs: deps.env.VIDEO_REFRESHER_RETRY_BASE_MS,
            sleep: deps.sleep ?? realSleep,
            onRetry: (attempt, err, waitMs) =>
              progress.log(`${f.name}: part ${n} failed (${(err as Error).message}); try ${attempt + 1}/${PART_TRIES} in ${(waitMs / 1000).toFixed(1)} s`),
          },
        );
        entry.parts.push(n);
        sent.push(n);
        await state.save();
        bar.increment(bytes.length);
        progress.log(`${f.name}: part ${n}/${entry.partCount} stored`);
        if (haltAfter > 0 && sent.length >= haltAfter) {
          // Test hook: stand still after N stored parts so a test can kill this process at a known point.
          progress.log(`halted after ${sent.length} part(s) (VIDEO_REFRESHER_TEST_HALT_AFTER_PARTS)`);
          await new Promise(() => setInterval(() => {}, 60_000));
        }
      };
      const queue = [...todo];
      const workers = Array.from({ length: Math.min(partConcurrency(deps.env), queue.length) }, async () => {
        for (let n = queue.shift(); n !== undefined; n = queue.shift()) await sendPart(n);
      });
      await Promise.all(workers);
      // Parts are read at the offsets the first size gave: a file that grew (a recording still being written) or
      // was rewritten meanwhile would be completed cut short or mixed, and the job made from it would exit 0.
      const now = await fh.stat();
      if (now.size !== f.size || Math.trunc(now.mtimeMs) !== f.mtimeMs) throw fileChanged(f);
    } catch (err) {
      if (err instanceof CliError && err.code === "file_changed") {
        // Its record can never match the file again (the key holds the old size and mtime), and the upload would
        // hold storage until the stale-upload rule removes it: drop both (the server's side at best effort).
        state.remove(url, f);
        await state.save();
        await api.DELETE("/api/uploads/{id}", { params: { path: { id: entry.uploadId } }, signal: timeout() }).catch(() => {});
        throw err;
      }
      // An upload the server no longer knows (aborted by the cron after JOB_TTL_HOURS): start over once.
      if (resumed && !restarted && err instanceof CliError && (err.status === 404 || err.code === "upload_closed")) {
        progress.log(`${f.name}: the server no longer has upload ${entry.uploadId}; starting again`);
        state.remove(url, f);
        await state.save();
        await fh.close();
        return uploadLargeFile(deps, f, true);
      }
      throw err;
    } finally {
      await fh.close().catch(() => {});
    }

    try {
      // Safe to repeat: the edge answers a complete of a completed upload like the first (200), so a lost answer or
      // a 5xx must not fail a submit of gigabytes.
      await withRetries(
        () => call(url, api.POST("/api/uploads/{id}/complete", { params: { path: { id: entry.uploadId } }, signal: timeout() })),
        {
          tries: PART_TRIES,
          baseMs: deps.env.VIDEO_REFRESHER_RETRY_BASE_MS,
          sleep: deps.sleep ?? realSleep,
          onRetry: (attempt, err, waitMs) =>
            progress.log(`${f.name}: completing the upload failed (${(err as Error).message}); try ${attempt + 1}/${PART_TRIES} in ${(waitMs / 1000).toFixed(1)} s`),
        },
      );
      entry.completed = true;
      await state.save();
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      if (resumed && !restarted && err.status === 404) {
        // Every part was stored by an earlier run, but the cron has removed the upload since: start over once.
        progress.log(`${f.name}: the server no longer has upload ${entry.uploadId}; starting again`);
        state.remove(url, f);
        await state.save();
        return uploadLargeFile(deps, f, true);
      }
      if (err.code === "part_mismatch") {
        // Storage and the upload's record disagree on a part the edge does not name: the parts this run counts as
        // stored are not all good, so the next run sends every part again (the last upload of a part wins).
        entry.parts = [];
        await state.save();
        throw new CliError(`${f.name}: ${err.message} (run the command again: it sends every part again)`, err.exitCode, err.code, err.status);
      }
      // upload_closed: a job uses it (an earlier run's, whose answer was lost) or the cron aborted it. Not completed
      // by this run, so not recorded as completed; the job request says which: its key answers with that job, or
      // upload_used has the file sent again.
      if (err.code !== "upload_closed") throw err;
      progress.log(`${f.name}: upload ${entry.uploadId} can no longer be completed (${err.message})`);
    }
  }
  bar.update(f.size, "stored");
  return { file: f.path, via: "multipart", size: f.size, uploadId: entry.uploadId, partsSent: sent.sort((a, b) => a - b), partsSkipped: skipped, resumed };
}
