import type { ApiErrorBody } from "../shared/types.js";

/** A failed API call. status 0 means the request never got an answer (offline, DNS, connection reset). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: ApiErrorBody | null = null,
    /** The answer's Retry-After, in ms (null without one). */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /**
   * Worth retrying: the request may not have reached the edge, or the edge had a transient problem, or asked to wait
   * (429). Not a 429 quota_exceeded: only finished or deleted jobs free that room, never a second or two.
   */
  get retryable(): boolean {
    if (this.status === 429) return this.code !== "quota_exceeded";
    return this.status === 0 || this.status >= 500;
  }
}

/** A Retry-After header (delay in seconds) in ms, or null. */
export function retryAfterMs(value: string | null): number | null {
  const s = value === null ? NaN : Number(value);
  return Number.isFinite(s) && s >= 0 ? s * 1000 : null;
}

/** An ApiError from an answer's status, parsed body and Retry-After header. */
export function errorOf(status: number, body: unknown, retryAfter: string | null): ApiError {
  const b = (body ?? null) as ApiErrorBody | null;
  return new ApiError(status, b?.error?.code ?? `http_${status}`, messageFor(status, b), b, retryAfterMs(retryAfter));
}

/**
 * Runs `request` again while its failure is worth retrying (ApiError.retryable: no answer, a server error, a 429
 * other than quota_exceeded), up to `attempts` tries: waits `baseMs`, then twice as long each time, or the answer's
 * Retry-After when that is longer. A Retry-After beyond `maxWaitMs` ends the tries at once (better said than waited).
 * `onRetry` hears of each wait before it starts (the try about to come, counted from 1).
 */
export async function withRetries<T>(
  request: () => Promise<T>,
  opts: { attempts?: number; baseMs?: number; maxWaitMs?: number; onRetry?: (err: ApiError, next: number, waitMs: number) => void } = {},
): Promise<T> {
  const { attempts = 4, baseMs = 500, maxWaitMs = 10_000 } = opts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (!(err instanceof ApiError && err.retryable) || attempt >= attempts) throw err;
      const wait = Math.max(baseMs * 2 ** (attempt - 1), err.retryAfterMs ?? 0);
      if (wait > maxWaitMs) throw err;
      opts.onRetry?.(err, attempt + 1, wait);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

export interface ApiResponse<T> {
  status: number;
  data: T;
  headers: Headers;
}

/**
 * Sends the user to the login page and back here afterwards. Used for every 401, so an expired session anywhere
 * ends on the login form with "expired" explained, and logging in returns to the page they were on.
 */
export function redirectToLogin(reason: "expired" | "signin" = "expired"): never {
  const next = location.pathname + location.search;
  const params = new URLSearchParams({ next });
  if (reason === "expired") params.set("expired", "1");
  location.assign(`/login?${params.toString()}`);
  throw new ApiError(401, "unauthorized", "Redirecting to login");
}

export function messageFor(status: number, body: ApiErrorBody | null): string {
  const fromServer = body?.error?.message;
  if (status === 0) return "Could not reach the server. Check your connection and try again.";
  if (status >= 500) return `The server had a problem (${status}). Please try again.`;
  if (status === 429) return fromServer ?? "Too many requests. Wait a moment and try again.";
  return fromServer ?? `Request failed (${status}).`;
}

export async function parseError(res: Response): Promise<ApiError> {
  let body: ApiErrorBody | null = null;
  try {
    body = (await res.json()) as ApiErrorBody;
  } catch {
    // Non-JSON error (a proxy's HTML page): the status alone has to do.
  }
  return errorOf(res.status, body, res.headers.get("retry-after"));
}

export interface ApiOptions {
  /** Login form: a 401 there means bad credentials, not an expired session. */
  allow401?: boolean;
  signal?: AbortSignal;
  /** Extra request headers (e.g. Idempotency-Key). */
  headers?: Record<string, string>;
}

/** JSON API call. Resolves for 2xx with the status (200 vs 202 matters for cancel); throws ApiError otherwise. */
export async function api<T>(method: string, path: string, body?: unknown, opts: ApiOptions = {}): Promise<ApiResponse<T>> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: {
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...opts.headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal: opts.signal,
    });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError(0, "network", messageFor(0, null));
  }
  if (!res.ok) {
    const err = await parseError(res);
    if (res.status === 401 && !opts.allow401) redirectToLogin(err.code === "session_expired" ? "expired" : "signin");
    throw err;
  }
  const data = res.status === 204 ? (undefined as T) : ((await res.json().catch(() => undefined)) as T);
  return { status: res.status, data, headers: res.headers };
}

export interface XhrResult {
  status: number;
  body: unknown;
  /** A response header, or null. */
  header(name: string): string | null;
}

/**
 * XMLHttpRequest rather than fetch because only XHR reports upload progress. Resolves with any HTTP status
 * (callers decide); rejects with ApiError(0) on network failure or abort.
 */
export function xhrSend(
  method: string,
  url: string,
  body: XMLHttpRequestBodyInit,
  onProgress: (loaded: number, total: number) => void,
  signal?: AbortSignal,
  headers: Record<string, string> = {},
): Promise<XhrResult> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("accept", "application/json");
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded, ev.total);
    });
    xhr.addEventListener("load", () => {
      let parsed: unknown = null;
      try {
        parsed = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        parsed = null;
      }
      resolve({ status: xhr.status, body: parsed, header: (name) => xhr.getResponseHeader(name) });
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", messageFor(0, null))));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "Upload cancelled.")));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(body);
  });
}
