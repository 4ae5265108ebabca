import { api, ApiError, withRetries } from "./api.js";
import { CancelControl, cancelJobs } from "./cancel.js";
import { confirmCancel } from "./dialog.js";
import { byId, h, progressBar, setText, timeEl, updateProgress } from "./dom.js";
import { browserHost } from "./host.js";
import { backgroundDelay, notifyIfFinished } from "./notify.js";
import { announce, badge, showMessage, updateBadge } from "./ui.js";
import {
  agoLabel,
  expiryLabel,
  fileNamesSummary,
  isCancellable,
  isTerminal,
  percent,
  queueLabel,
  statusLabel,
  statusTone,
} from "../shared/format.js";
import { Poller, type PollOutcome } from "../shared/poll.js";
import type { Job, JobPage } from "../shared/types.js";

const PAGE_SIZE = 20;
/** The poll refreshes this many of the newest jobs in one request; active jobs are nearly always among them. */
const POLL_WINDOW = 50;

interface Row {
  job: Job;
  li: HTMLLIElement;
  checkbox: HTMLInputElement;
  badge: HTMLSpanElement;
  bar: HTMLProgressElement;
  count: HTMLSpanElement;
  created: HTMLTimeElement;
  expiry: HTMLSpanElement;
  thumb: HTMLImageElement;
  cancel: CancelControl;
}

const rows = new Map<string, Row>();
let list: HTMLOListElement;
let poller: Poller;

function signature(job: Job): string {
  return `${job.status}|${job.completedVariations}|${job.failedVariations}|${job.cancelledVariations}|${job.thumbnailUrl ?? ""}|${job.expiresAt ?? ""}`;
}

function countText(job: Job): string {
  const count = `${job.completedVariations} of ${job.totalVariations} variation${job.totalVariations === 1 ? "" : "s"}`;
  const queue = queueLabel(job);
  return queue ? `${count} · ${queue}` : count;
}

function buildRow(job: Job): Row {
  const names = job.files.map((f) => f.name);
  const title = fileNamesSummary(names);
  const href = `/jobs/${encodeURIComponent(job.id)}`;
  const thumb = h("img", { attrs: { alt: "", loading: "lazy", width: 96, height: 54 } });
  // The runner makes the thumbnail best effort and a bit later; until it exists the placeholder shows.
  thumb.addEventListener("error", () => (thumb.hidden = true));
  thumb.addEventListener("load", () => (thumb.hidden = false));
  const checkbox = h("input", { attrs: { type: "checkbox", "aria-label": `Select job ${title}` } });
  checkbox.addEventListener("change", updateSelection);
  const row: Row = {
    job,
    li: h("li", { class: "job-card", attrs: { "data-job-id": job.id } }),
    checkbox,
    badge: badge("", "neutral"),
    bar: progressBar(`Progress of job ${title}`, 0),
    count: h("span", { class: "job-count" }),
    created: timeEl(job.createdAt, agoLabel(job.createdAt, Date.now())),
    expiry: h("span", { class: "job-expiry" }),
    thumb,
    cancel: null as unknown as CancelControl,
  };
  row.cancel = new CancelControl(job.id, title, job.status, {
    onJob: (fresh) => {
      applyJob(fresh);
      // Still cancelling (202): watch closely again, the runner is stopping its encodes right now.
      if (!isTerminal(fresh.status)) poller.kick();
    },
    onRefresh: () => poller.kick(),
    onGone: () => poller.kick(),
  });
  row.li.append(
    h("div", { class: "job-select" }, checkbox),
    h("a", { class: "job-thumb", attrs: { href, tabindex: -1, "aria-hidden": "true" } }, thumb, h("span", { class: "thumb-placeholder", text: "▶" })),
    h(
      "div",
      { class: "job-main" },
      h("h2", { class: "job-title" }, h("a", { attrs: { href }, text: title })),
      h("p", { class: "job-meta" }, "Created ", row.created, row.expiry),
    ),
    h("div", { class: "job-state" }, row.badge, row.bar, row.count),
    h("div", { class: "job-actions" }, row.cancel.button),
    // Full row width, so a failed-cancel message reads as one line under the job, not a narrow column.
    row.cancel.error,
  );
  renderRow(row);
  return row;
}

function renderRow(row: Row): void {
  const { job } = row;
  row.li.dataset.status = job.status;
  updateBadge(row.badge, statusLabel(job), statusTone(job.status));
  updateProgress(row.bar, percent(job.progress));
  row.bar.hidden = isTerminal(job.status) || job.status === "queued";
  setText(row.count, countText(job));
  const expiry = expiryLabel(job.expiresAt, Date.now());
  setText(row.expiry, expiry ? ` · ${expiry}` : "");
  setText(row.created, agoLabel(job.createdAt, Date.now()));
  if (job.thumbnailUrl && row.thumb.getAttribute("src") !== job.thumbnailUrl) row.thumb.src = job.thumbnailUrl;
  if (!job.thumbnailUrl) row.thumb.hidden = true;
  row.cancel.update(job.status);
  const selectable = isCancellable(job.status);
  row.checkbox.disabled = !selectable;
  if (!selectable) row.checkbox.checked = false;
  row.checkbox.parentElement?.toggleAttribute("data-disabled", !selectable);
}

/** Updates a loaded job's row in place; returns whether anything the user cares about changed. */
function applyJob(job: Job): boolean {
  const row = rows.get(job.id);
  if (!row) return false;
  const before = row.job;
  const changed = signature(before) !== signature(job);
  // List responses carry no variations; keep the job's files as the list sent them.
  row.job = job;
  renderRow(row);
  if (before.status !== job.status) {
    announce(`${fileNamesSummary(job.files.map((f) => f.name))}: ${statusLabel(job)}`);
    notifyIfFinished(before.status, job);
  }
  updateSelection();
  if (!isTerminal(job.status)) ensurePolling();
  return changed;
}

function ensurePolling(): void {
  if (!poller.running) poller.start();
}

function anyActive(): boolean {
  for (const row of rows.values()) if (!isTerminal(row.job.status)) return true;
  return false;
}

/** The API's order (newest first): by creation time, then by id. */
function isNewer(a: Job, b: Job): boolean {
  const at = Date.parse(a.createdAt);
  const bt = Date.parse(b.createdAt);
  return at !== bt ? at > bt : a.id > b.id;
}

function newestLoaded(): Job | null {
  let newest: Job | null = null;
  for (const row of rows.values()) if (!newest || isNewer(row.job, newest)) newest = row.job;
  return newest;
}

/**
 * Merges the newest jobs (API order) into the list: loaded rows are updated, jobs newer than every loaded row (made
 * in another tab) go on top. The window reaches further back than the first page, so a job older than the newest
 * loaded row that is not loaded sits below the loaded ones: prepending it would put old jobs above new ones, and
 * Load more brings it in its place.
 */
function mergeNewest(jobs: Job[], seen?: Set<string>): boolean {
  const newest = newestLoaded();
  let changed = false;
  // Oldest first, so each newer job lands above the one before it.
  for (const job of [...jobs].reverse()) {
    seen?.add(job.id);
    if (rows.has(job.id)) {
      if (applyJob(job)) changed = true;
    } else if (!newest || isNewer(job, newest)) {
      const row = buildRow(job);
      rows.set(job.id, row);
      list.prepend(row.li);
      byId("jobs-empty").hidden = true;
      changed = true;
      if (!isTerminal(job.status)) ensurePolling();
    }
  }
  if (changed) updateSelection();
  return changed;
}

async function tick(): Promise<PollOutcome> {
  if (!anyActive()) return "terminal";
  const { data } = await api<JobPage>("GET", `/api/jobs?limit=${POLL_WINDOW}`);
  const seen = new Set<string>();
  let changed = mergeNewest(data.jobs, seen);
  for (const row of rows.values()) {
    if (seen.has(row.job.id) || isTerminal(row.job.status)) continue;
    if (await refreshRow(row.job.id)) changed = true;
  }
  showMessage(byId("jobs-message"), null);
  return anyActive() ? (changed ? "changed" : "unchanged") : "terminal";
}

/** Reads one loaded job again and applies it (a 404 drops its row); returns whether its row changed. */
async function refreshRow(id: string, request: (path: string) => Promise<Job> = async (path) => (await api<Job>("GET", path)).data): Promise<boolean> {
  try {
    return applyJob(await request(`/api/jobs/${encodeURIComponent(id)}`));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    rows.get(id)?.li.remove();
    rows.delete(id);
    return true;
  }
}

/**
 * Reads the jobs a bulk cancel touched and applies them: its answer has each job's status, not its counts ("Cancelled
 * (k/N)") or expiry, and the poll cannot be left to bring them: with no job left active it stops without a request.
 * The newest jobs come in one list request, older ones one by one (a few at a time); each read is tried again on no
 * answer or a server error.
 */
async function refreshCancelled(ids: string[]): Promise<void> {
  const { data } = await withRetries(() => api<JobPage>("GET", `/api/jobs?limit=${POLL_WINDOW}`));
  const seen = new Set<string>();
  mergeNewest(data.jobs, seen);
  const rest = ids.filter((id) => rows.has(id) && !seen.has(id));
  const read = (path: string) => withRetries(async () => (await api<Job>("GET", path)).data);
  const worker = async () => {
    for (let id = rest.shift(); id !== undefined; id = rest.shift()) await refreshRow(id, read);
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  updateSelection();
}

let refreshingShown = false;

/**
 * The poller stops once every job is finished, and a stopped poller ignores the tab coming back; without this a
 * job started in another tab (or by a script) never shows here until a reload.
 */
async function refreshWhenShown(): Promise<void> {
  if (document.visibilityState !== "visible" || poller.running || refreshingShown) return;
  refreshingShown = true;
  try {
    if (rows.size === 0) {
      // An empty list has no Load more cursor yet; the first page sets it as on arrival.
      await loadPage(null);
      return;
    }
    const { data } = await api<JobPage>("GET", `/api/jobs?limit=${POLL_WINDOW}`);
    mergeNewest(data.jobs);
    if (anyActive()) ensurePolling();
  } catch (err) {
    showMessage(byId("jobs-message"), `Could not refresh the list: ${err instanceof Error ? err.message : String(err)}`, "info");
  } finally {
    refreshingShown = false;
  }
}

function selectedIds(): string[] {
  return [...rows.values()].filter((r) => r.checkbox.checked && isCancellable(r.job.status)).map((r) => r.job.id);
}

function updateSelection(): void {
  const ids = selectedIds();
  const button = byId<HTMLButtonElement>("cancel-selected");
  button.disabled = ids.length === 0;
  setText(button, ids.length ? `Cancel selected (${ids.length})` : "Cancel selected");
  const all = byId<HTMLInputElement>("select-all");
  const selectable = [...rows.values()].filter((r) => isCancellable(r.job.status));
  all.disabled = selectable.length === 0;
  all.checked = selectable.length > 0 && ids.length === selectable.length;
  all.indeterminate = ids.length > 0 && ids.length < selectable.length;
}

async function cancelSelected(): Promise<void> {
  const ids = selectedIds();
  if (ids.length === 0) return;
  const choice = await confirmCancel({
    title: ids.length === 1 ? "Cancel 1 job?" : `Cancel ${ids.length} jobs?`,
    description:
      "Variations that are already finished are kept and stay downloadable. Queued ones are dropped and running ones are stopped.",
    confirmLabel: ids.length === 1 ? "Cancel job" : `Cancel ${ids.length} jobs`,
  });
  if (!choice) return;
  const message = byId("jobs-message");
  showMessage(message, null);
  const button = byId<HTMLButtonElement>("cancel-selected");
  button.disabled = true;
  for (const id of ids) rows.get(id)?.cancel.setBusy(true);
  const result = await cancelJobs(ids, choice.reason);
  for (const id of ids) rows.get(id)?.cancel.setBusy(false);
  if ("error" in result) {
    showMessage(message, result.error);
    updateSelection();
    return;
  }
  for (const r of result.results) {
    const row = rows.get(r.id);
    if (!row) continue;
    row.checkbox.checked = false;
    // not_cancellable (finished meanwhile) and not_found are settled by the refresh below, like a single 409.
    if (r.status) applyJob({ ...row.job, status: r.status });
  }
  updateSelection();
  announce(`Cancel requested for ${result.results.length} job${result.results.length === 1 ? "" : "s"}.`);
  try {
    await refreshCancelled(result.results.map((r) => r.id));
  } catch (err) {
    showMessage(message, `Cancel requested; could not refresh the list: ${err instanceof Error ? err.message : String(err)} Reload to see the jobs' counts.`, "info");
  }
  // Jobs still stopping their runners (Cancelling…): watch closely, they finish within seconds.
  if (anyActive()) poller.kick();
}

async function loadPage(cursor: string | null): Promise<void> {
  const more = byId<HTMLButtonElement>("jobs-more");
  const qs = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) qs.set("cursor", cursor);
  more.disabled = true;
  try {
    const { data } = await api<JobPage>("GET", `/api/jobs?${qs.toString()}`);
    for (const job of data.jobs) {
      if (rows.has(job.id)) continue;
      const row = buildRow(job);
      rows.set(job.id, row);
      list.append(row.li);
    }
    more.hidden = !data.nextCursor;
    more.dataset.cursor = data.nextCursor ?? "";
    byId("jobs-empty").hidden = rows.size > 0;
    updateSelection();
    if (anyActive()) ensurePolling();
  } catch (err) {
    showMessage(byId("jobs-message"), err instanceof Error ? err.message : String(err));
  } finally {
    more.disabled = false;
    byId("jobs-loading").hidden = true;
  }
}

export async function initJobs(): Promise<void> {
  list = byId<HTMLOListElement>("job-list");
  poller = new Poller(
    {
      tick: async () => {
        try {
          return await tick();
        } catch (err) {
          showMessage(byId("jobs-message"), `Live updates paused: ${err instanceof Error ? err.message : String(err)} Retrying…`, "info");
          return "error";
        }
      },
      hiddenDelayMs: backgroundDelay,
    },
    browserHost,
  );
  byId("cancel-selected").addEventListener("click", () => void cancelSelected());
  byId<HTMLInputElement>("select-all").addEventListener("change", (ev) => {
    const on = (ev.target as HTMLInputElement).checked;
    for (const row of rows.values()) if (isCancellable(row.job.status)) row.checkbox.checked = on;
    updateSelection();
  });
  document.addEventListener("visibilitychange", () => void refreshWhenShown());
  // Another window coming to the front leaves this tab "visible" throughout; focus is the only sign of return.
  window.addEventListener("focus", () => void refreshWhenShown());
  byId("jobs-more").addEventListener("click", (ev) => void loadPage((ev.currentTarget as HTMLElement).dataset.cursor || null));
  // Countdowns and "ago" labels move without any request.
  window.setInterval(() => {
    for (const row of rows.values()) renderRow(row);
  }, 30_000);
  await loadPage(null);
}
