import { api, ApiError } from "./api.js";
import { CancelControl } from "./cancel.js";
import { MoreControl, PauseControl, RetryControl, type JobControlHooks } from "./job-controls.js";
import { byId, formatDateTime, h, progressBar, setText, timeEl, updateProgress } from "./dom.js";
import { browserHost } from "./host.js";
import { backgroundDelay, notifyIfFinished } from "./notify.js";
import { me } from "./session.js";
import { announce, badge, loadOrOffer, messageEl, showMessage, updateBadge } from "./ui.js";
import {
  canDownloadZip,
  countLabel,
  queueLabel,
  expiryLabel,
  fileNamesSummary,
  fileStatus,
  formatBytes,
  isTerminal,
  percent,
  statusLabel,
  statusTone,
  variationFileName,
  variationStatusLabel,
} from "../shared/format.js";
import { Poller, type PollOutcome } from "../shared/poll.js";
import { paramsInWords, qualityParts } from "../shared/variation-words.js";
import { renderQualityChart } from "./quality-chart.js";
import type { Job, JobEffects, JobFile, Variation } from "../shared/types.js";

interface VariationView {
  li: HTMLLIElement;
  badge: HTMLSpanElement;
  bar: HTMLProgressElement;
  error: HTMLParagraphElement;
  actions: HTMLDivElement;
  actionsFor: string | null;
  thumb: HTMLSpanElement;
  thumbFor: string | null;
  params: HTMLSpanElement;
  quality: HTMLSpanElement;
  redraw: HTMLSpanElement;
}

interface FileView {
  section: HTMLElement;
  badge: HTMLSpanElement;
  bar: HTMLProgressElement;
  count: HTMLSpanElement;
  error: HTMLParagraphElement;
  list: HTMLOListElement;
  chart: HTMLElement;
  variations: Map<number, VariationView>;
}

let job: Job;
let poller: Poller;
let cancel: CancelControl;
let pause: PauseControl;
let retry: RetryControl;
let more: MoreControl;
const files = new Map<string, FileView>();
const els = {} as {
  root: HTMLElement;
  title: HTMLHeadingElement;
  badge: HTMLSpanElement;
  count: HTMLParagraphElement;
  queue: HTMLParagraphElement;
  bar: HTMLProgressElement;
  zip: HTMLAnchorElement;
  error: HTMLParagraphElement;
  times: HTMLDListElement;
  files: HTMLDivElement;
};

function outputUrl(variation: Variation): string {
  return `/api/jobs/${encodeURIComponent(job.id)}/outputs/${encodeURIComponent(variation.outputId!)}`;
}

function cancelledByText(by: string | null): string {
  if (!by) return "";
  return by === me().email ? "you" : by;
}

/** "Medium: color, zoom, mirror" */
function effectsLabel(e: JobEffects): string {
  return `${e.intensity.charAt(0).toUpperCase()}${e.intensity.slice(1)}: ${e.families.join(", ")}`;
}

function renderTimes(): void {
  const items: [string, Node | string][] = [["Created", timeEl(job.createdAt, formatDateTime(job.createdAt))]];
  // Older API answers (a stale tab) may lack effects.
  if (job.effects) items.push(["Effects", effectsLabel(job.effects)]);
  if (job.startedAt) items.push(["Started", timeEl(job.startedAt, formatDateTime(job.startedAt))]);
  if (job.cancelledAt) {
    const detail = h("span", {}, timeEl(job.cancelledAt, formatDateTime(job.cancelledAt)));
    const by = cancelledByText(job.cancelledBy);
    if (by) detail.append(` by ${by}`);
    if (job.cancelReason) detail.append(h("span", { class: "cancel-reason" }, " — reason: ", h("q", { text: job.cancelReason })));
    items.push(["Cancelled", detail]);
  }
  // A cancelled job's finish time is its cancel time, already shown above.
  if (job.completedAt && job.status !== "cancelled") {
    items.push([job.status === "failed" ? "Failed" : "Completed", timeEl(job.completedAt, formatDateTime(job.completedAt))]);
  }
  const expiry = expiryLabel(job.expiresAt, Date.now());
  if (expiry) items.push(["Kept until", h("span", {}, timeEl(job.expiresAt!, formatDateTime(job.expiresAt!)), ` (${expiry.toLowerCase()})`)]);
  const next = items.flatMap(([term, value]) => [h("dt", { text: term }), h("dd", { attrs: { "data-term": term.toLowerCase() } }, value)]);
  // Rebuilt whole (it is tiny); text-only children so nothing user-supplied is parsed.
  els.times.replaceChildren(...next);
}

function buildVariation(file: JobFile, v: Variation): VariationView {
  const label = `Variation ${String(v.index).padStart(2, "0")}`;
  const view: VariationView = {
    li: h("li", { class: "variation", attrs: { "data-index": v.index } }),
    badge: badge("", "neutral"),
    bar: progressBar(`Progress of ${file.name} ${label.toLowerCase()}`, 0),
    error: h("p", { class: "variation-error", attrs: { hidden: true } }),
    actions: h("div", { class: "variation-actions" }),
    actionsFor: null,
    thumb: h("span", { class: "variation-thumb", attrs: { "aria-hidden": "true" } }),
    thumbFor: null,
    params: h("span", { class: "variation-params" }),
    quality: h("span", { class: "variation-quality" }),
    redraw: h("span", { class: "variation-redraw" }),
  };
  const info = h("p", { class: "variation-info" }, view.params, view.quality, view.redraw);
  view.li.append(view.thumb, h("span", { class: "variation-name", text: label }), view.badge, view.bar, view.actions, info, view.error);
  return view;
}

/** Thumbnail, applied parameters in words, quality figures and re-draws of one variation row (text only). */
function renderVariationInfo(v: Variation, view: VariationView): void {
  const thumb = v.thumbnailUrl ?? null;
  if (thumb !== view.thumbFor) {
    view.thumbFor = thumb;
    view.thumb.replaceChildren(...(thumb ? [h("img", { attrs: { src: thumb, alt: "", loading: "lazy", decoding: "async" } })] : []));
  }
  setText(view.params, paramsInWords(v.params));
  const q = qualityParts(v.quality);
  setText(view.quality, q.length ? q.join(" · ") : "");
  view.quality.hidden = q.length === 0;
  const redraws = v.redraws ?? 0;
  setText(view.redraw, redraws ? `re-drawn ${redraws}×` : "");
  view.redraw.hidden = redraws === 0;
  if (redraws && v.redrawReason) view.redraw.title = v.redrawReason;
}

function renderVariation(file: JobFile, v: Variation, view: VariationView): void {
  updateBadge(view.badge, variationStatusLabel(v.status), statusTone(v.status));
  renderVariationInfo(v, view);
  updateProgress(view.bar, v.status === "completed" ? 100 : percent(v.progress));
  view.bar.hidden = v.status !== "running";
  view.li.dataset.status = v.status;
  if (v.error) {
    view.error.hidden = false;
    setText(view.error, v.error);
  } else view.error.hidden = true;
  if (v.status === "completed" && v.outputId && view.actionsFor !== v.outputId) {
    view.actionsFor = v.outputId;
    const name = variationFileName(file.name, v.index);
    const url = outputUrl(v);
    const preview = h("button", {
      class: "button button-small",
      attrs: { type: "button", "aria-expanded": "false" },
      text: "Preview",
    });
    const download = h("a", {
      class: "button button-small",
      attrs: { href: url, download: name },
      text: "Download",
    });
    download.append(h("span", { class: "visually-hidden", text: ` ${name}` }));
    const previewText = h("span", { text: "Preview" });
    preview.replaceChildren(previewText, h("span", { class: "visually-hidden", text: ` ${name}` }));
    let video: HTMLVideoElement | null = null;
    preview.addEventListener("click", () => {
      if (video) {
        video.remove();
        video = null;
        preview.setAttribute("aria-expanded", "false");
        setText(previewText, "Preview");
        return;
      }
      video = h("video", { class: "preview", attrs: { controls: true, preload: "metadata", src: url, "aria-label": `Preview of ${name}` } });
      view.li.append(video);
      preview.setAttribute("aria-expanded", "true");
      setText(previewText, "Hide preview");
    });
    view.actions.replaceChildren(preview, download);
    if (v.outputSize) view.actions.append(h("span", { class: "muted", text: formatBytes(v.outputSize) }));
  }
}

function buildFile(file: JobFile): FileView {
  const view: FileView = {
    section: h("section", { class: "file card", attrs: { "data-file-id": file.id } }),
    badge: badge("", "neutral"),
    bar: progressBar(`Progress of ${file.name}`, 0),
    count: h("span", { class: "file-count" }),
    error: messageEl(),
    list: h("ol", { class: "variations" }),
    chart: h("figure", { class: "quality-chart", attrs: { hidden: true } }),
    variations: new Map(),
  };
  view.section.append(
    h(
      "header",
      { class: "file-header" },
      h("h2", { class: "file-name", text: file.name }),
      h("span", { class: "muted", text: formatBytes(file.size) }),
      view.badge,
    ),
    h("div", { class: "file-progress" }, view.bar, view.count),
    view.error,
    view.chart,
    view.list,
  );
  return view;
}

function renderFile(file: JobFile, view: FileView): void {
  const status = fileStatus(file, job.variationsPerVideo);
  updateBadge(view.badge, status.label, status.tone);
  updateProgress(view.bar, percent(file.progress));
  view.bar.hidden = file.status !== "processing";
  setText(view.count, countLabel(file.completedVariations, file.variations?.length ?? job.variationsPerVideo));
  showMessage(view.error, file.error);
  for (const v of file.variations ?? []) {
    let vv = view.variations.get(v.index);
    if (!vv) {
      vv = buildVariation(file, v);
      view.variations.set(v.index, vv);
      view.list.append(vv.li);
    }
    renderVariation(file, v, vv);
  }
  renderQualityChart(view.chart, file.name, file.variations ?? []);
}

function render(): void {
  const names = job.files.map((f) => f.name);
  setText(els.title, fileNamesSummary(names));
  document.title = `${fileNamesSummary(names)} · Video Refresher`;
  els.root.dataset.status = job.status;
  updateBadge(els.badge, statusLabel(job), statusTone(job.status));
  setText(els.count, countLabel(job.completedVariations, job.totalVariations));
  const queue = queueLabel(job);
  setText(els.queue, queue ?? "");
  els.queue.hidden = !queue;
  updateProgress(els.bar, percent(job.progress));
  els.bar.hidden = isTerminal(job.status);
  cancel.update(job.status);
  pause.update(job);
  retry.update(job);
  more.update(job);
  const zip = canDownloadZip(job);
  els.zip.hidden = !zip;
  if (zip && els.zip.getAttribute("href") !== job.downloadUrl) els.zip.href = job.downloadUrl!;
  showMessage(els.error, job.status === "failed" ? job.error ?? "The job failed." : null);
  renderTimes();
  for (const file of job.files) {
    let view = files.get(file.id);
    if (!view) {
      view = buildFile(file);
      files.set(file.id, view);
      els.files.append(view.section);
    }
    renderFile(file, view);
  }
}

function apply(fresh: Job): boolean {
  const before = job;
  const changed =
    before.status !== fresh.status ||
    before.completedVariations !== fresh.completedVariations ||
    before.failedVariations !== fresh.failedVariations ||
    before.cancelledVariations !== fresh.cancelledVariations;
  job = fresh;
  render();
  if (before.status !== fresh.status) {
    announce(`Job status: ${statusLabel(fresh)}`);
    notifyIfFinished(before.status, fresh);
  }
  return changed;
}

async function tick(): Promise<PollOutcome> {
  try {
    const { data } = await api<Job>("GET", `/api/jobs/${encodeURIComponent(job.id)}`);
    const changed = apply(data);
    showMessage(byId("job-message"), null);
    return isTerminal(data.status) ? "terminal" : changed ? "changed" : "unchanged";
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showMessage(byId("job-message"), "This job no longer exists (it may have expired).");
      return "terminal";
    }
    showMessage(byId("job-message"), `Live updates paused: ${err instanceof Error ? err.message : String(err)} Retrying…`, "info");
    return "error";
  }
}

export async function initJob(id: string): Promise<void> {
  const message = byId("job-message");
  let first: Job;
  try {
    // No answer, a server error or a 429: tried again, then explained with a Try again button (loadOrOffer).
    first = await loadOrOffer(message, async () => (await api<Job>("GET", `/api/jobs/${encodeURIComponent(id)}`)).data, byId("job-loading"));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    byId("job-loading").hidden = true;
    // Another user's job answers 404 too: the page must not hint that it exists.
    showMessage(message, err.status === 404 ? "Job not found. It may have expired, or it belongs to someone else." : err.message);
    return;
  }
  job = first;
  els.root = byId("job");
  els.title = byId<HTMLHeadingElement>("job-title");
  els.badge = badge("", "neutral");
  els.count = h("p", { class: "job-count" });
  els.queue = h("p", { class: "job-queue", attrs: { id: "job-queue" } });
  els.bar = progressBar("Overall progress", 0);
  els.zip = h("a", { class: "button button-primary", attrs: { id: "download-zip", download: "" }, text: "Download ZIP" });
  els.error = messageEl();
  els.times = h("dl", { class: "times" });
  els.files = h("div", { class: "files" });
  poller = new Poller({ tick, hiddenDelayMs: backgroundDelay }, browserHost);
  const hooks: JobControlHooks = {
    onJob: (fresh) => {
      apply(fresh);
      if (!isTerminal(fresh.status)) poller.kick();
    },
    onRefresh: () => poller.kick(),
    onGone: () => showMessage(message, "This job no longer exists (it may have expired)."),
  };
  const context = fileNamesSummary(job.files.map((f) => f.name));
  cancel = new CancelControl(job.id, context, job.status, hooks);
  pause = new PauseControl(job, context, hooks);
  retry = new RetryControl(job, hooks);
  more = new MoreControl(job, hooks);
  byId("job-loading").hidden = true;
  els.root.append(
    h(
      "div",
      { class: "job-summary card" },
      h("div", { class: "job-status-line" }, els.badge, els.count),
      els.queue,
      els.bar,
      els.error,
      h("div", { class: "job-actions" }, pause.button, cancel.button, retry.button, els.zip, more.form),
      cancel.error,
      pause.error,
      retry.error,
      more.error,
      els.times,
    ),
    els.files,
  );
  els.root.hidden = false;
  render();
  if (!isTerminal(job.status)) poller.start();
  window.setInterval(renderTimes, 30_000);
}
