import { h } from "./dom.js";

export interface CancelDialogOptions {
  title: string;
  description: string;
  confirmLabel: string;
  /** Ask for an optional reason (cancel); default true. */
  reason?: boolean;
  /** The safe choice's label; default "Keep it running". */
  keepLabel?: string;
  /** Style of the confirm button; default danger (cancel). */
  tone?: "danger" | "primary";
}

let dialog: HTMLDialogElement | null = null;

const FOCUSABLE = 'button:not([disabled]), textarea:not([disabled]), input:not([disabled]), [href], [tabindex]:not([tabindex="-1"])';

function build(): HTMLDialogElement {
  const title = h("h2", { attrs: { id: "cancel-dialog-title" } });
  const desc = h("p", { attrs: { id: "cancel-dialog-desc" } });
  const reason = h("textarea", {
    attrs: { id: "cancel-reason", name: "reason", rows: 3, maxlength: 500, placeholder: "e.g. wrong source video" },
  });
  const keep = h("button", { class: "button", attrs: { type: "button", "data-action": "keep" }, text: "Keep it running" });
  const confirm = h("button", { class: "button button-danger", attrs: { type: "button", "data-action": "confirm" } });
  const el = h(
    "dialog",
    { class: "dialog", attrs: { id: "cancel-dialog", "aria-labelledby": "cancel-dialog-title", "aria-describedby": "cancel-dialog-desc" } },
    title,
    desc,
    h(
      "div",
      { class: "field", attrs: { id: "cancel-reason-field" } },
      h("label", { attrs: { for: "cancel-reason" } }, "Reason ", h("span", { class: "muted", text: "(optional)" })),
      reason,
    ),
    h("div", { class: "dialog-actions" }, keep, confirm),
  );
  keepTabInside(el);
  document.body.appendChild(el);
  return el;
}

/**
 * showModal() makes the page inert, but Tab can still leave for the browser chrome; wrap it inside the dialog so
 * keyboard users stay on the choice they have to make.
 */
export function keepTabInside(el: HTMLDialogElement): void {
  el.addEventListener("keydown", (ev) => {
    if (ev.key !== "Tab") return;
    // The reason field is hidden for pause and resume; a hidden control cannot take focus, so wrapping to it would
    // leave focus where it was (or let it escape the dialog).
    const items = Array.from(el.querySelectorAll<HTMLElement>(FOCUSABLE)).filter((item) => !item.closest("[hidden]"));
    const first = items[0];
    const last = items[items.length - 1];
    if (!first || !last) return;
    if (ev.shiftKey && document.activeElement === first) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && document.activeElement === last) {
      ev.preventDefault();
      first.focus();
    }
  });
}

/**
 * Asks for confirmation with an optional reason (cancel), or without one (pause, resume: `reason: false`). Resolves with the (trimmed) reason, or null when the user keeps
 * the job (button, Esc, or backdrop). Focus returns to whatever opened the dialog.
 */
export function confirmCancel(opts: CancelDialogOptions): Promise<{ reason: string } | null> {
  dialog ??= build();
  const el = dialog;
  const opener = document.activeElement as HTMLElement | null;
  el.querySelector("#cancel-dialog-title")!.textContent = opts.title;
  el.querySelector("#cancel-dialog-desc")!.textContent = opts.description;
  const reason = el.querySelector<HTMLTextAreaElement>("#cancel-reason")!;
  reason.value = "";
  el.querySelector<HTMLElement>("#cancel-reason-field")!.hidden = opts.reason === false;
  const confirm = el.querySelector<HTMLButtonElement>('[data-action="confirm"]')!;
  confirm.textContent = opts.confirmLabel;
  confirm.className = `button ${opts.tone === "primary" ? "button-primary" : "button-danger"}`;
  const keep = el.querySelector<HTMLButtonElement>('[data-action="keep"]')!;
  keep.textContent = opts.keepLabel ?? "Keep it running";

  return new Promise((resolve) => {
    let result: { reason: string } | null = null;
    const onClick = (ev: MouseEvent) => {
      const target = ev.target as HTMLElement;
      if (target === el) el.close(); // backdrop click
      const action = target.closest<HTMLElement>("[data-action]")?.dataset.action;
      if (action === "confirm") {
        result = { reason: reason.value.trim() };
        el.close();
      } else if (action === "keep") {
        el.close();
      }
    };
    const onClose = () => {
      el.removeEventListener("click", onClick);
      el.removeEventListener("close", onClose);
      if (opener && document.contains(opener)) opener.focus();
      resolve(result);
    };
    el.addEventListener("click", onClick);
    el.addEventListener("close", onClose);
    el.showModal();
    // The safe choice gets focus: Enter right after opening must not cancel anything.
    keep.focus();
  });
}
