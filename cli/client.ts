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
    ...(token && newerToken ? { fetch: followingLogin(token, newerToken) } : {}),
  });
}

/**
 * A fetch that follows a newer `login`: another CLI process sharing this config may log in meanwhile, and login
 * revokes the token it replaces — which a long `submit --wait` or `download` of this process still sends. A 401 is
 * then sent again, once, with the token the config holds now (`newerToken` answers null when it holds the same one,
 * or another server's). A 401 means the edge did nothing with the request, so sending it again is safe. Only requests
 * whose body can be sent again are: none, JSON, or an upload part of known length (held in memory up to
 * MAX_REPLAY_BYTES); a streamed form body is not held in memory for it.
 */
const MAX_REPLAY_BYTES = 16 * 1024 * 1024;
export function followingLogin(token: string, newerToken: (used: string) => Promise<string | null>) {
  let current = token;
  return async (request: Request, init?: RequestInit): Promise<Response> => {
    const type = request.headers.get("content-type") ?? "";
    const length = Number(request.headers.get("content-length") ?? NaN);
    // A part of a large upload (a buffer of at most a part's size) can be sent again too; a form's stream cannot.
    const replayable =
      request.body === null || type.startsWith("application/json") || (type === "application/octet-stream" && length <= MAX_REPLAY_BYTES);
    const spare = replayable ? request.clone() : null;
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
