import { api } from "./api.js";
import type { ApiErrorBody, Me } from "../shared/types.js";

let current: Me["user"] | null = null;

export function me(): Me["user"] {
  if (!current) throw new Error("session not loaded");
  return current;
}

/** Loads the signed-in user; without a session the page hands over to the login form (and comes back after). */
export async function loadMe(): Promise<Me["user"]> {
  const res = await fetch("/api/me", { headers: { accept: "application/json" }, credentials: "same-origin" }).catch(() => null);
  if (res?.status === 401) {
    const code = ((await res.json().catch(() => null)) as ApiErrorBody | null)?.error?.code;
    const params = new URLSearchParams({ next: location.pathname + location.search });
    // Only a session that existed and ran out is "expired"; a first visit just asks to log in.
    if (code === "session_expired") params.set("expired", "1");
    location.replace(`/login?${params.toString()}`);
    return new Promise(() => {}); // navigation is under way; nothing else should render
  }
  if (!res || !res.ok) throw new Error(res ? `GET /api/me answered ${res.status}` : "Could not reach the server.");
  current = ((await res.json()) as Me).user;
  return current;
}

export async function logout(): Promise<void> {
  await api("POST", "/api/auth/logout").catch(() => undefined);
  location.assign("/login");
}
