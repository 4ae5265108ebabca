import { api, ApiError } from "./api.js";
import { byId } from "./dom.js";
import { loadOrOffer, showMessage } from "./ui.js";
import type { Me } from "../shared/types.js";

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
  try {
    return (await api<Me>("GET", "/api/me", undefined, { allow401: true })).data.user;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) throw err;
    const params = new URLSearchParams({ next: location.pathname + location.search });
    // Only a session that existed and ran out is "expired"; a first visit just asks to log in.
    if (err.code === "session_expired") params.set("expired", "1");
    location.replace(`/login?${params.toString()}`);
    return new Promise(() => {}); // navigation is under way; nothing else should render
  }
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
