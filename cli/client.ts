import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./api";
import { apiError, CliError, EXIT, isNetworkError, networkReason } from "./errors";

export type Schemas = components["schemas"];
export type Job = Schemas["Job"];
export type Api = Client<paths>;

/** How long one JSON request may take (cancel waits up to 5 s on the server). */
export const REQUEST_TIMEOUT_MS = 60_000;

/**
 * A typed client for the API (types generated from its OpenAPI document: cli/api.d.ts). `newerToken`: see
 * {@link followingLogin}.
 */
export function apiClient(
  baseUrl: string,
  token?: string,
  headers: Record<string, string> = {},
  newerToken?: (used: string) => Promise<string | null>,
): Api {
  return createClient<paths>({
    baseUrl,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    fetch: waitingOutRateLimit(token && newerToken ? followingLogin(token, newerToken) : (r, init) => fetch(r, init)),
  });
}

/** Whether a request's body can be sent again: none, JSON, or an upload part of known length held in memory. */
const MAX_REPLAY_BYTES = 16 * 1024 * 1024;
function replayable(request: Request): boolean {
  const type = request.headers.get("content-type") ?? "";
  const length = Number(request.headers.get("content-length") ?? NaN);
  // A part of a large upload (a buffer of at most a part's size) can be sent again too; a form's stream cannot.
  return request.body === null || type.startsWith("application/json") || (type === "application/octet-stream" && length <= MAX_REPLAY_BYTES);
}

type Fetch = (request: Request, init?: RequestInit) => Promise<Response>;

/** Tries of one request refused with `rate_limited` (the account's request budget, edge/lib/request-limit.ts). */
export const RATE_LIMITED_TRIES = 4;

/**
 * A fetch that waits out the account's request limit: a 429 `rate_limited` is sent again after its Retry-After (at
 * most 15 s, so three waits stay inside one request's REQUEST_TIMEOUT_MS), up to RATE_LIMITED_TRIES in all. The edge refuses it before the route does anything, so sending it
 * again is safe; another process of the same account (a second `download`, a script) spends the same budget, which
 * is why one refusal must not end a long command. Other 429s (quota_exceeded) are answers, not waits: returned as is.
 */
export function waitingOutRateLimit(inner: Fetch, sleep: (ms: number) => Promise<void> = realSleep): Fetch {
  return async (request, init) => {
    for (let attempt = 1; ; attempt++) {
      const spare = replayable(request) ? request.clone() : null;
      const res = await inner(request, init);
      if (res.status !== 429 || !spare || attempt >= RATE_LIMITED_TRIES) return res;
      const code = await res
        .clone()
        .json()
        .then((b: { error?: { code?: unknown } }) => b?.error?.code)
        .catch(() => null);
      if (code !== "rate_limited") return res;
      await res.body?.cancel().catch(() => {});
      const seconds = Number(res.headers.get("retry-after"));
      await sleep(Math.min(15, Number.isFinite(seconds) && seconds > 0 ? seconds : 10) * 1000);
      request = spare;
    }
  };
}

/**
 * A fetch that follows a newer `login`: another CLI process sharing this config may log in meanwhile, and login
 * revokes the token it replaces — which a long `submit --wait` or `download` of this process still sends. A 401 is
 * then sent again, once, with the token the config holds now (`newerToken` answers null when it holds the same one,
 * or another server's). A 401 means the edge did nothing with the request, so sending it again is safe. Only requests
 * whose body can be sent again are: none, JSON, or an upload part of known length (held in memory up to
 * MAX_REPLAY_BYTES); a streamed form body is not held in memory for it.
 */
export function followingLogin(token: string, newerToken: (used: string) => Promise<string | null>): Fetch {
  let current = token;
  return async (request: Request, init?: RequestInit): Promise<Response> => {
    const spare = replayable(request) ? request.clone() : null;
    const used = current;
    request.headers.set("authorization", `Bearer ${used}`);
    const res = await fetch(request, init);
    if (res.status !== 401 || !spare) return res;
    const newer = current !== used ? current : await newerToken(used).catch(() => null);
    if (!newer || newer === used) return res;
    current = newer;
    await res.body?.cancel().catch(() => {});
    spare.headers.set("authorization", `Bearer ${newer}`);
    return fetch(spare, init);
  };
}

interface Result<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/**
 * Awaits an openapi-fetch call: the data on success; otherwise a CliError carrying the API's message (exit 3 for
 * 401/403) or, when the server could not be reached, a network error (exit 4).
 */
export async function call<T>(baseUrl: string, request: Promise<Result<T>>): Promise<{ data: T; response: Response }> {
  let res: Result<T>;
  try {
    res = await request;
  } catch (err) {
    throw unreachable(baseUrl, err);
  }
  if (!res.response.ok) throw apiError(res.response.status, res.error);
  return { data: res.data as T, response: res.response };
}

export function unreachable(baseUrl: string, err: unknown): CliError {
  // fetch reports a failure of the request's own body (a file that changed while it was read) as "fetch failed"
  // with that failure as the cause: it is the reason, not the network.
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof CliError) return e;
  }
  if (isNetworkError(err)) return new CliError(`cannot reach ${baseUrl}: ${networkReason(err)}`, EXIT.network, "network");
  return new CliError((err as Error)?.message ?? String(err));
}

export const timeout = (ms = REQUEST_TIMEOUT_MS) => AbortSignal.timeout(ms);

/** The CLI's one wait (tests pass their own where a command takes a `sleep`). */
export const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const TERMINAL: ReadonlySet<Job["status"]> = new Set(["completed", "failed", "cancelled"]);
