import { api, ApiError } from "./api.js";
import { confirmCancel } from "./dialog.js";
import { h, setText } from "./dom.js";
import { announce, messageEl, showMessage } from "./ui.js";
import { canAddVariations, canRetryFailed, isPausable, isResumable, runningVariations, statusLabel } from "../shared/format.js";
import type { Job } from "../shared/types.js";

export type ActionOutcome =
  | { kind: "ok"; job: Job; status: number }
  | { kind: "conflict"; job: Job | null; message: string }
  | { kind: "gone" }
  | { kind: "error"; message: string; retryable: boolean };

/**
 * POST /api/jobs/:id/<action> (pause, resume, retry, more). 409 carries the job when the job's state is the reason
 * (re-rendered in place, with the server's message); 404 means it is gone; anything else (410 expired, 429 over a
 * limit) is shown as the API's message. `idempotencyKey` goes with resume, retry and more (see Control.reopen).
 */
export async function jobAction(
  id: string,
  action: "pause" | "resume" | "retry" | "more",
  body: unknown = {},
  idempotencyKey?: string,
): Promise<ActionOutcome> {
  try {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : undefined;
    const res = await api<Job>("POST", `/api/jobs/${encodeURIComponent(id)}/${action}`, body, { headers });
    return { kind: "ok", job: res.data, status: res.status };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 409) return { kind: "conflict", job: err.body?.job ?? null, message: err.message };
    if (err.status === 404) return { kind: "gone" };
    return { kind: "error", message: err.message, retryable: err.retryable };
  }
}

export interface JobControlHooks {
  /** A fresh job came back: re-render it in place (and poll again if it is active). */
  onJob(job: Job): void;
  /** The answer carried no job: fetch it again. */
  onRefresh(): void;
  /** 404: the job is gone (expired or deleted meanwhile). */
  onGone(): void;
}

/** What a reopen's key is kept for: the job as the page shows it. */
const stateOf = (j: Job) => JSON.stringify([j.id, j.status, j.totalVariations, j.completedVariations, j.failedVariations, j.cancelledVariations]);

/** Shared by the controls below: one request at a time, its outcome rendered in place, errors on one line. */
abstract class Control {
  readonly error: HTMLParagraphElement = messageEl("job-control-error");
  protected busy = false;
  protected job: Job;
  /**
   * The Idempotency-Key of a reopen whose answer never came, for the same request on the job as the page still
   * shows it: sent again, the edge answers with what the first one did instead of adding a second batch. Once the
   * page shows the job changed (the first one did go through), the same click is a new request with a new key.
   */
  private unanswered: { state: string; intent: string; key: string } | null = null;

  constructor(job: Job, protected readonly hooks: JobControlHooks, private readonly failure: string) {
    this.job = job;
  }

  update(job: Job): void {
    this.job = job;
    // The job moved on (the unanswered try went through, or something else changed it): a click from now on is a
    // new request, even once the job is back in the same state (a retry whose variations failed again).
    if (this.unanswered && this.unanswered.state !== stateOf(job)) this.unanswered = null;
    this.render();
  }

  protected abstract render(): void;
  protected abstract focusTarget(): HTMLElement;

  /** Resume, retry or more, with the key of an unanswered try of the same request on the same job state. */
  protected reopen(action: "resume" | "retry" | "more", body: unknown = {}): () => Promise<ActionOutcome> {
    const j = this.job;
    const state = stateOf(j);
    const intent = JSON.stringify([action, body]);
    if (this.unanswered?.state !== state || this.unanswered.intent !== intent) this.unanswered = { state, intent, key: crypto.randomUUID() };
    const { key } = this.unanswered;
    return async () => {
      const outcome = await jobAction(j.id, action, body, key);
      if (outcome.kind !== "error" || !outcome.retryable) this.unanswered = null;
      return outcome;
    };
  }

  protected async run(request: () => Promise<ActionOutcome>): Promise<void> {
    showMessage(this.error, null);
    this.busy = true;
    this.render();
    const outcome = await request();
    this.busy = false;
    switch (outcome.kind) {
      case "ok":
        this.update(outcome.job);
        this.hooks.onJob(outcome.job);
        announce(`Job status: ${statusLabel(outcome.job)}`);
        break;
      case "conflict":
        if (outcome.job) {
          this.update(outcome.job);
          this.hooks.onJob(outcome.job);
        } else {
          this.render();
          this.hooks.onRefresh();
        }
        showMessage(this.error, `${this.failure}: ${outcome.message}`);
        break;
      case "gone":
        this.render();
        showMessage(this.error, "This job no longer exists.");
        this.hooks.onGone();
        break;
      case "error":
        this.render();
        showMessage(this.error, `${this.failure}: ${outcome.message}`);
        this.focusTarget().focus();
        // The request may have been done without its answer arriving: the page learns the job's real state (a
        // finished job's page no longer polls) instead of showing the old one while runners work on it.
        this.hooks.onRefresh();
        break;
    }
  }
}

/**
 * Pause and Resume share one button, like Cancel: confirm → "Pausing…" (also while a paused job's runners are still
 * stopping) → the status in place; "Resume" on a paused job and on a cancelled one with cancelled or failed variations.
 */
export class PauseControl extends Control {
  readonly button: HTMLButtonElement;
  private readonly text: HTMLSpanElement;
  private pending: "pause" | "resume" | null = null;

  constructor(job: Job, context: string, hooks: JobControlHooks) {
    super(job, hooks, "Could not change the job");
    this.text = h("span", { text: "Pause" });
    this.button = h(
      "button",
      { class: "button pause-button", attrs: { type: "button", "data-job-id": job.id } },
      this.text,
      h("span", { class: "visually-hidden", text: ` job ${context}` }),
    );
    this.button.addEventListener("click", () => void this.request());
    this.render();
  }

  private action(): "pause" | "resume" | null {
    if (isPausable(this.job.status)) return "pause";
    if (isResumable(this.job, Date.now())) return "resume";
    return null;
  }

  protected render(): void {
    const stopping = this.job.status === "paused" && runningVariations(this.job) > 0;
    const action = this.action();
    let label: string;
    if ((this.busy && this.pending === "pause") || stopping) label = "Pausing…";
    else if (this.busy && this.pending === "resume") label = "Resuming…";
    else label = action === "pause" ? "Pause" : "Resume";
    this.button.hidden = !this.busy && !stopping && action === null;
    this.button.disabled = this.busy || stopping;
    this.button.dataset.action = action ?? "";
    setText(this.text, label);
  }

  protected focusTarget(): HTMLElement {
    return this.button;
  }

  async request(): Promise<void> {
    const action = this.action();
    if (!action) return;
    const cancelled = this.job.status === "cancelled";
    const choice = await confirmCancel(
      action === "pause"
        ? {
            title: "Pause this job?",
            description:
              "Running encodes are stopped and put back in the queue; finished variations are kept. Resume continues where it left off.",
            confirmLabel: "Pause job",
            reason: false,
            tone: "primary",
          }
        : {
            title: cancelled ? "Continue this cancelled job?" : "Resume this job?",
            description: cancelled
              ? "Its cancelled and failed variations are queued again; finished ones are kept. The job is kept until it finishes again."
              : "Its queued variations are handed to runners again.",
            confirmLabel: cancelled ? "Continue job" : "Resume job",
            keepLabel: cancelled ? "Leave it cancelled" : "Keep it paused",
            reason: false,
            tone: "primary",
          },
    );
    if (!choice) return;
    this.pending = action;
    await this.run(action === "resume" ? this.reopen("resume") : () => jobAction(this.job.id, action));
    this.pending = null;
    this.render();
  }
}

/** "Retry failed" on a finished job with failed variations: no confirmation (nothing is lost), "Retrying…" in flight. */
export class RetryControl extends Control {
  readonly button: HTMLButtonElement;
  private readonly text: HTMLSpanElement;

  constructor(job: Job, hooks: JobControlHooks) {
    super(job, hooks, "Could not retry");
    this.text = h("span", { text: "Retry failed" });
    this.button = h("button", { class: "button retry-button", attrs: { type: "button" } }, this.text);
    this.button.addEventListener("click", () => void this.run(this.reopen("retry")));
    this.render();
  }

  protected render(): void {
    this.button.hidden = !this.busy && !canRetryFailed(this.job, Date.now());
    this.button.disabled = this.busy;
    setText(this.text, this.busy ? "Retrying…" : "Retry failed");
  }

  protected focusTarget(): HTMLElement {
    return this.button;
  }
}

/** "More variations" with a small count (1–20 per video) on finished jobs. */
export class MoreControl extends Control {
  readonly form: HTMLFormElement;
  private readonly input: HTMLInputElement;
  private readonly button: HTMLButtonElement;

  constructor(job: Job, hooks: JobControlHooks) {
    super(job, hooks, "Could not add variations");
    this.input = h("input", {
      class: "more-count",
      attrs: { id: "more-count", type: "number", min: 1, max: 20, step: 1, value: 1, required: true, inputmode: "numeric" },
    });
    this.button = h("button", { class: "button more-button", attrs: { type: "submit" }, text: "More variations" });
    this.form = h(
      "form",
      { class: "more-form", attrs: { "aria-label": "More variations" } },
      h("label", { attrs: { for: "more-count" }, text: "Per video" }),
      this.input,
      this.button,
    );
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const n = Number(this.input.value);
      if (!Number.isInteger(n) || n < 1 || n > 20) {
        showMessage(this.error, "Choose between 1 and 20 variations per video.");
        this.input.focus();
        return;
      }
      void this.run(this.reopen("more", { variations: n }));
    });
    this.render();
  }

  protected render(): void {
    this.form.hidden = !this.busy && !canAddVariations(this.job, Date.now());
    this.button.disabled = this.busy;
    this.input.disabled = this.busy;
    setText(this.button, this.busy ? "Adding…" : "More variations");
  }

  protected focusTarget(): HTMLElement {
    return this.input;
  }
}
