import { isTerminal, statusLabel, countLabel, fileNamesSummary } from "../shared/format.js";
import type { Job, JobStatus } from "../shared/types.js";
import { setText } from "./dom.js";

const PREF_KEY = "vr.notifications";
const ASKED_KEY = "vr.notifications.asked";

/** While hidden, a slow watch keeps running only so a finished job can be announced (see PollerOptions). */
export const BACKGROUND_POLL_MS = 15_000;

function store(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: notifications simply stay off
  }
}

export function notificationsSupported(): boolean {
  return "Notification" in window;
}

export function notificationsEnabled(): boolean {
  return notificationsSupported() && Notification.permission === "granted" && store()?.getItem(PREF_KEY) !== "off";
}

/** Delay for the hidden-tab watch, or null (pause) when notifications are off. */
export function backgroundDelay(): number | null {
  return notificationsEnabled() ? BACKGROUND_POLL_MS : null;
}

/**
 * Asks for permission once per browser, at the moment it makes sense (the user just started a job and may walk
 * away). Must be called synchronously from the click/submit handler: browsers ignore prompts without a gesture.
 */
export function askOnce(): void {
  const s = store();
  if (!notificationsSupported() || Notification.permission !== "default" || s?.getItem(ASKED_KEY)) return;
  s?.setItem(ASKED_KEY, "1");
  void Notification.requestPermission().then((p) => {
    if (p === "granted") s?.setItem(PREF_KEY, "on");
    refreshToggle();
  });
}

let toggle: HTMLButtonElement | null = null;

function refreshToggle(): void {
  if (!toggle) return;
  const on = notificationsEnabled();
  const denied = notificationsSupported() && Notification.permission === "denied";
  toggle.setAttribute("aria-pressed", String(on));
  setText(toggle, on ? "Notifications: on" : "Notifications: off");
  toggle.title = denied
    ? "Notifications are blocked in this browser's site settings"
    : "Notify me when a job finishes while this tab is in the background";
}

/** The nav toggle: turning it on asks for permission if it was never asked. */
export function initToggle(button: HTMLButtonElement): void {
  if (!notificationsSupported()) return;
  toggle = button;
  button.hidden = false;
  refreshToggle();
  button.addEventListener("click", () => {
    const s = store();
    if (notificationsEnabled()) {
      s?.setItem(PREF_KEY, "off");
      refreshToggle();
      return;
    }
    if (Notification.permission === "granted") {
      s?.setItem(PREF_KEY, "on");
      refreshToggle();
      return;
    }
    s?.setItem(ASKED_KEY, "1");
    void Notification.requestPermission().then((p) => {
      if (p === "granted") s?.setItem(PREF_KEY, "on");
      refreshToggle();
    });
  });
}

/** Fires when a job the page was watching reaches a terminal status while the tab is in the background. */
export function notifyIfFinished(previous: JobStatus | undefined, job: Job): void {
  if (!previous || isTerminal(previous) || !isTerminal(job.status)) return;
  if (document.visibilityState !== "hidden" || !notificationsEnabled()) return;
  const names = fileNamesSummary(job.files.map((f) => f.name));
  const n = new Notification(`Job ${statusLabel(job)}`, {
    body: `${names} — ${countLabel(job.completedVariations, job.totalVariations)}`,
    tag: `job-${job.id}`,
  });
  n.addEventListener("click", () => {
    window.focus();
    if (location.pathname !== `/jobs/${job.id}`) location.assign(`/jobs/${encodeURIComponent(job.id)}`);
    n.close();
  });
}
