import { ApiError, withRetries } from "./api.js";
import { h, setText } from "./dom.js";

/**
 * Screen-reader announcements go through one polite live region in the layout (#announcer), so status changes
 * ("Cancelled (2/4)") are spoken once, not every time a progress bar moves.
 */
export function announce(message: string): void {
  const region = document.getElementById("announcer");
  if (!region) return;
  // Clearing first makes a repeated identical message be announced again.
  region.textContent = "";
  window.setTimeout(() => (region.textContent = message), 50);
}

/** Shows (or clears with null) an error/notice paragraph; role=alert makes it announced immediately. */
export function showMessage(el: HTMLElement, message: string | null, kind: "error" | "info" | "success" = "error"): void {
  if (!message) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  el.dataset.kind = kind;
  el.hidden = false;
  setText(el, message);
}

export function messageEl(extraClass = ""): HTMLParagraphElement {
  const el = h("p", { class: `message ${extraClass}`.trim(), attrs: { role: "alert", hidden: true } });
  return el;
}

/** The status pill: text plus a tone class (Completed green, Failed red, Cancelled neutral gray). */
export function badge(label: string, tone: string): HTMLSpanElement {
  return h("span", { class: `badge badge-${tone}`, text: label });
}

export function updateBadge(el: HTMLElement, label: string, tone: string): void {
  setText(el, label);
  const cls = `badge badge-${tone}`;
  if (el.className !== cls) el.className = cls;
}

const submitting = new WeakSet<HTMLFormElement>();

/**
 * Runs a form's request once at a time: its submit buttons are disabled until the answer is in (success or error),
 * so a double click or a second Enter does not send it twice (two tokens, one of them never shown). The flag also
 * covers submits that do not go through a button.
 */
export async function submitOnce(form: HTMLFormElement, work: () => Promise<void>): Promise<void> {
  if (submitting.has(form)) return;
  submitting.add(form);
  const buttons = Array.from(form.querySelectorAll<HTMLButtonElement>('button[type="submit"]')).filter((b) => !b.disabled);
  for (const b of buttons) b.disabled = true;
  try {
    await work();
  } finally {
    submitting.delete(form);
    for (const b of buttons) b.disabled = false;
  }
}

/**
 * A page's first load (the signed-in user, the job of a job page): tried again a few times while the failure is
 * worth retrying (withRetries), then said in `message` in words, with a Try again button that runs the load again.
 * Resolves once a load succeeds, so the page goes on building as if the first try had worked; a failure that no
 * retry can fix (a 404, a refusal) is thrown to the caller. While the page waits for Try again, body[data-ready]
 * is "error", as for a page that failed to load; `loading` (the page's "Loading…" line) is hidden meanwhile and
 * shown again while a Try again runs.
 */
export function loadOrOffer<T>(message: HTMLElement, load: () => Promise<T>, loading?: HTMLElement): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const attempt = async (clicked: boolean): Promise<void> => {
      let value: T;
      try {
        value = await withRetries(load);
      } catch (err) {
        if (!(err instanceof ApiError && err.retryable)) {
          reject(err);
          return;
        }
        if (loading) loading.hidden = true;
        const button = h("button", { class: "button button-small try-again", attrs: { type: "button" }, text: "Try again" });
        button.addEventListener("click", () => {
          button.disabled = true;
          setText(button, "Trying again…");
          document.body.removeAttribute("data-ready");
          if (loading) loading.hidden = false;
          void attempt(true);
        });
        showMessage(message, `Could not load this page: ${err.message}`);
        message.append(" ", button);
        document.body.setAttribute("data-ready", "error");
        // A keyboard user who pressed Try again stays on it; a first failure does not take the focus away.
        if (clicked) button.focus();
        return;
      }
      showMessage(message, null);
      resolve(value);
    };
    void attempt(false);
  });
}
