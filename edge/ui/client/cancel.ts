import { api, ApiError } from "./api.js";
import { confirmCancel } from "./dialog.js";
import { h, setText } from "./dom.js";
import { announce, messageEl, showMessage } from "./ui.js";
import { isCancellable, isTerminal, statusLabel } from "../shared/format.js";
import type { BulkCancelResult, Job, JobStatus } from "../shared/types.js";

export type CancelOutcome =
  | { kind: "ok"; job: Job; status: number }
  | { kind: "conflict"; job: Job | null }
  | { kind: "gone" }
  | { kind: "error"; message: string };

/**
 * POST /api/jobs/:id/cancel. 200 = terminal (cancelled, or completed if it won the race), 202 = still cancelling,
 * 409 = it had already finished (not an error for the user: we just show the real status).
 */
export async function cancelJob(id: string, reason: string): Promise<CancelOutcome> {
  try {
    const res = await api<Job>("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`, reason ? { reason } : {});
    return { kind: "ok", job: res.data, status: res.status };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 409) return { kind: "conflict", job: err.body?.job ?? null };
    if (err.status === 404) return { kind: "gone" };
    return { kind: "error", message: `Could not cancel: ${err.message}` };
  }
}

export async function cancelJobs(ids: string[], reason: string): Promise<BulkCancelResult | { error: string }> {
  try {
    return (await api<BulkCancelResult>("POST", "/api/jobs/cancel", reason ? { ids, reason } : { ids })).data;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { error: `Could not cancel: ${err.message}` };
  }
}

export interface CancelControlHooks {
  /** A fresh job came back (200/202/409 with body): re-render it in place. */
  onJob(job: Job): void;
  /** The answer carried no job (409 without body): fetch it again. */
  onRefresh(): void;
  /** 404: the job is gone (expired or deleted meanwhile). */
  onGone(): void;
}

/**
 * One job's Cancel button and its error line. Owns the "Cancelling…" state while a request is in flight so a poll
 * that lands meanwhile cannot flip the button back to "Cancel".
 */
export class CancelControl {
  readonly button: HTMLButtonElement;
  readonly error: HTMLParagraphElement;
  private readonly text: HTMLSpanElement;
  private busy = false;
  private status: JobStatus;

  constructor(
    private readonly jobId: string,
    context: string,
    status: JobStatus,
    private readonly hooks: CancelControlHooks,
  ) {
    this.status = status;
    this.text = h("span", { text: "Cancel" });
    this.button = h(
      "button",
      { class: "button button-danger-outline cancel-button", attrs: { type: "button", "data-job-id": jobId } },
      this.text,
      // Visible text stays short; the hidden part names the job for screen-reader users scanning buttons.
      h("span", { class: "visually-hidden", text: ` job ${context}` }),
    );
    this.button.addEventListener("click", () => void this.request());
    this.error = messageEl("cancel-error");
    this.render();
  }

  update(status: JobStatus): void {
    this.status = status;
    this.render();
  }

  setBusy(busy: boolean): void {
    this.busy = busy;
    this.render();
  }

  showError(message: string | null): void {
    showMessage(this.error, message);
  }

  private render(): void {
    // Our request in flight keeps "Cancelling…" against a poll that still says processing; but a poll that says the
    // job ended wins: there is nothing left to cancel, and a disabled "Cancelling…" beside "Cancelled (2/4)" would
    // stay until our own answer came back (the cancel waits for the runners before answering).
    const cancelling = !isTerminal(this.status) && (this.busy || this.status === "cancelling");
    this.button.hidden = !cancelling && !isCancellable(this.status);
    this.button.disabled = cancelling;
    setText(this.text, cancelling ? "Cancelling…" : "Cancel");
  }

  async request(): Promise<void> {
    const choice = await confirmCancel({
      title: "Cancel this job?",
      description:
        "Variations that are already finished are kept and stay downloadable. Queued ones are dropped and running ones are stopped.",
      confirmLabel: "Cancel job",
    });
    if (!choice) return;
    this.showError(null);
    this.setBusy(true);
    const outcome = await cancelJob(this.jobId, choice.reason);
    this.busy = false;
    switch (outcome.kind) {
      case "ok":
        this.update(outcome.job.status);
        this.hooks.onJob(outcome.job);
        announce(`Job status: ${statusLabel(outcome.job)}`);
        break;
      case "conflict":
        if (outcome.job) {
          this.update(outcome.job.status);
          this.hooks.onJob(outcome.job);
          announce(`Job already finished: ${statusLabel(outcome.job)}`);
        } else {
          this.render();
          this.hooks.onRefresh();
        }
        break;
      case "gone":
        this.render();
        this.showError("This job no longer exists.");
        this.hooks.onGone();
        break;
      case "error":
        // Re-enable for a retry and keep focus on the button so the retry is one key press away.
        this.render();
        this.showError(outcome.message);
        this.button.focus();
        break;
    }
  }
}
