import { api, ApiError, messageFor, parseError } from "./api.js";
import { byId } from "./dom.js";
import { loadOrOffer, showMessage } from "./ui.js";
import type { ApiErrorBody, Me } from "../shared/types.js";

let current: Me["user"] | null = null;

export function me(): Me["user"] {
  if (!current) throw new Error("session not loaded");
  return current;
}

/**
 * Loads the signed-in user; without a session the page hands over to the login form (and comes back after). No
 * answer, a server error or a 429 is tried again, then explained in #page-message with a Try again button
 * (loadOrOffer); the promise settles once the user is known.
 */
export async function loadMe(): Promise<Me["user"]> {
  current = await loadOrOffer(byId("page-message"), fetchMe);
  return current;
}

async function fetchMe(): Promise<Me["user"]> {
  let res: Response;
  try {
    res = await fetch("/api/me", { headers: { accept: "application/json" }, credentials: "same-origin" });
  } catch {
    throw new ApiError(0, "network", messageFor(0, null));
  }
  if (res.status === 401) {
    const code = ((await res.json().catch(() => null)) as ApiErrorBody | null)?.error?.code;
    const params = new URLSearchParams({ next: location.pathname + location.search });
    // Only a session that existed and ran out is "expired"; a first visit just asks to log in.
    if (code === "session_expired") params.set("expired", "1");
    location.replace(`/login?${params.toString()}`);
    return new Promise(() => {}); // navigation is under way; nothing else should render
  }
  if (!res.ok) throw await parseError(res);
  return ((await res.json()) as Me).user;
}

/**
 * Leaves for the login page only once the session is gone (204, or 401: it had already ended). On any other answer
 * the session is still valid, so the user stays and is told, rather than landing on a login page while still
 * signed in.
 */
export async function logout(button: HTMLButtonElement): Promise<void> {
  const message = byId("page-message");
  showMessage(message, null);
  button.disabled = true;
  let status: number;
  try {
    status = (await api("POST", "/api/auth/logout", undefined, { allow401: true })).status;
  } catch (err) {
    status = err instanceof ApiError ? err.status : 0;
  }
  if (status === 204 || status === 401) {
    location.assign("/login");
    return;
  }
  button.disabled = false;
  showMessage(message, "Could not log out; try again.");
}
