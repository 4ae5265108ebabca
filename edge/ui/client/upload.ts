import { api, ApiError, errorOf, redirectToLogin, withRetries, xhrSend } from "./api.js";
import { byId, h, progressBar, setText, updateProgress } from "./dom.js";
import { askOnce } from "./notify.js";
import { announce, showMessage } from "./ui.js";
import {
  MAX_FILES,
  MAX_VARIATIONS,
  MIN_VARIATIONS,
  perFileProgress,
  rejectReason,
  useMultipart,
} from "../shared/files.js";
import { formatBytes } from "../shared/format.js";
import type { Job, JobEffects } from "../shared/types.js";

interface Item {
  file: File;
  li: HTMLLIElement;
  bar: HTMLProgressElement;
  state: HTMLSpanElement;
  remove: HTMLButtonElement;
}

const items: Item[] = [];
const PART_ATTEMPTS = 5;
const PART_CONCURRENCY = 3;

function maxBytes(): number {
  return Number(document.body.dataset.maxUploadBytes) || 2 * 1024 ** 3;
}

interface SourceCaps {
  sourceSeconds: number;
  sourceDimension: number;
}

interface Quotas {
  storageBytes: number;
  activeJobs: number;
  queuedVariations: number;
  openUploads: number;
  unusedUploads: number;
}

/** "You are using 1.2 GB of 10 GB; 2 of 5 active jobs" from GET /api/limits; hidden when it cannot be read. */
async function showUsage(): Promise<void> {
  const el = byId("upload-usage");
  try {
    const { limits, usage } = (await api<{ limits: Quotas & SourceCaps; usage: Quotas }>("GET", "/api/limits")).data;
    el.textContent =
      `You are using ${formatBytes(usage.storageBytes)} of ${formatBytes(limits.storageBytes)}; ` +
      `${usage.activeJobs} of ${limits.activeJobs} active jobs; ` +
      `${usage.queuedVariations} of ${limits.queuedVariations} queued variations. ` +
      `Videos up to ${Math.round(limits.sourceSeconds / 60)} min and ${limits.sourceDimension} px on either side.`;
    el.hidden = false;
  } catch {
    el.hidden = true;
  }
}

function message(text: string | null, kind: "error" | "info" = "error"): void {
  showMessage(byId("upload-message"), text, kind);
}

async function head(file: File): Promise<Uint8Array> {
  return new Uint8Array(await file.slice(0, 16).arrayBuffer());
}

/** True while a submit is under way: the drop zone is not part of the disabled fieldset, so it checks this. */
let busy = false;

async function addFiles(list: FileList | File[]): Promise<void> {
  // A file dropped during an upload would re-enable Start job and, clicked, make a second job with another key.
  if (busy) return;
  const problems: string[] = [];
  for (const file of Array.from(list)) {
    if (items.some((i) => i.file.name === file.name && i.file.size === file.size && i.file.lastModified === file.lastModified)) continue;
    if (items.length >= MAX_FILES) {
      problems.push(`A job takes at most ${MAX_FILES} videos; “${file.name}” was not added.`);
      continue;
    }
    const reason = rejectReason(file, await head(file), maxBytes());
    if (reason) {
      problems.push(reason);
      continue;
    }
    items.push(buildItem(file));
  }
  renderList();
  message(problems.length ? problems.join(" ") : null);
}

function buildItem(file: File): Item {
  const remove = h("button", { class: "button button-small", attrs: { type: "button" }, text: "Remove" });
  remove.append(h("span", { class: "visually-hidden", text: ` ${file.name}` }));
  const item: Item = {
    file,
    li: h("li", { class: "upload-item" }),
    bar: progressBar(`Upload progress of ${file.name}`, 0),
    state: h("span", { class: "upload-state muted", text: "Ready" }),
    remove,
  };
  remove.addEventListener("click", () => {
    items.splice(items.indexOf(item), 1);
    dropOpenUpload(file);
    renderList();
    byId("file-input").focus();
  });
  item.li.append(
    h("span", { class: "upload-name", text: file.name }),
    h("span", { class: "muted", text: formatBytes(file.size) }),
    item.bar,
    item.state,
    remove,
  );
  return item;
}

function renderList(): void {
  byId("upload-list").replaceChildren(...items.map((i) => i.li));
  byId<HTMLButtonElement>("upload-submit").disabled = busy || items.length === 0;
  setText(byId("upload-summary"), items.length ? `${items.length} video${items.length === 1 ? "" : "s"} selected` : "No videos selected yet.");
}

function setBusy(on: boolean): void {
  busy = on;
  byId<HTMLFieldSetElement>("upload-fields").disabled = busy;
  byId<HTMLButtonElement>("upload-submit").disabled = busy || items.length === 0;
  setText(byId("upload-submit"), busy ? "Uploading…" : "Start job");
  for (const i of items) i.remove.hidden = busy;
}

/** The job's effects as chosen on the page (the server renders the choices from db/effects.ts). */
function chosenEffects(): JobEffects {
  const families = [...document.querySelectorAll<HTMLInputElement>('#effects input[name="families"]:checked')].map((c) => c.value);
  return { intensity: byId<HTMLSelectElement>("intensity").value, families };
}

/** A job-creating POST's answer: the job, and whether it was made by an earlier request with the same key. */
interface Created {
  job: Job;
  replayed: boolean;
}

/** Tries of one job-creating POST: safe to repeat, as every try carries the same Idempotency-Key. */
const CREATE_ATTEMPTS = 3;

/**
 * The Idempotency-Key of the job this page is creating, kept as long as the choice (files, count, effects) stays the
 * same: a retry, or a second click after an answer was lost, gets the job the first request created instead of a
 * second job. A changed choice is a new job and gets a new key.
 */
let pending: { choice: string; key: string; uploads?: string[] } | null = null;

function keyFor(variations: number, effects: JobEffects): string {
  const choice = JSON.stringify([variations, effects, items.map((i) => [i.file.name, i.file.size, i.file.lastModified])]);
  if (pending?.choice !== choice) pending = { choice, key: newKey() };
  return pending.key;
}

function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Sends a creating POST (a job, an upload) up to CREATE_ATTEMPTS times while the failure is worth retrying: no answer
 * (what it creates may exist: the key makes the retry answer it), a server error, or a 429 that asks to wait (after
 * its Retry-After, not before: a try inside the wait is refused again). A 429 quota_exceeded is reported at once.
 */
function createWithRetries<T>(send: () => Promise<T>): Promise<T> {
  return withRetries(send, {
    attempts: CREATE_ATTEMPTS,
    baseMs: 1000,
    // However long the edge asks to wait: the rows say so, and the form stays as it is meanwhile.
    maxWaitMs: Infinity,
    onRetry: (err, next, wait) => {
      const busy = err.status === 429;
      for (const i of items) {
        setText(i.state, busy ? `Server busy: trying again in ${Math.ceil(wait / 1000)} s (${next} of ${CREATE_ATTEMPTS})` : `No answer yet: trying again (${next} of ${CREATE_ATTEMPTS})`);
      }
      announce(busy ? "The server asked to wait; trying again." : "The connection dropped; trying again.");
    },
  });
}

/** `POST /api/jobs` from completed uploads, with the key. */
async function createFromUploads(uploads: string[], variations: number, effects: JobEffects, key: string): Promise<Created> {
  const res = await api<Job>("POST", "/api/jobs", { uploads, variations, effects }, { headers: { "Idempotency-Key": key } });
  return { job: res.data, replayed: res.headers.get("Idempotent-Replayed") === "true" };
}

/** One multipart/form-data request for small jobs; per-file bars follow the byte position of the body. */
async function uploadSingle(variations: number, effects: JobEffects, key: string): Promise<Created> {
  const form = new FormData();
  // Before the videos: a refused value then costs no upload.
  form.append("effects", JSON.stringify(effects));
  for (const i of items) form.append("videos", i.file, i.file.name);
  form.append("variations", String(variations));
  const sizes = items.map((i) => i.file.size);
  const res = await xhrSend("POST", "/api/jobs", form, (loaded, total) => {
    perFileProgress(sizes, loaded, total).forEach((p, n) => {
      const item = items[n]!;
      updateProgress(item.bar, Math.round(p));
      setText(item.state, p >= 100 ? "Sent" : `${Math.round(p)} %`);
    });
  }, undefined, { "Idempotency-Key": key });
  if (res.status === 401) redirectToLogin();
  if (res.status !== 202 && res.status !== 200 && res.status !== 201) throw errorOf(res.status, res.body, res.header("retry-after"));
  return { job: res.body as Job, replayed: res.header("Idempotent-Replayed") === "true" };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A large file's upload that a click on this page opened, with the parts the server took: a click after the network
 * dropped sends only the missing parts of the same upload. Before, every failure deleted the uploads and the next
 * click sent every byte again (2 GB for one lost part), and an upload the delete could not reach while offline kept
 * holding the user's open-upload slots and storage for a day.
 */
interface OpenUpload {
  id: string;
  partSize: number;
  partCount: number;
  sent: Set<number>;
  completed: boolean;
}
const openUploads = new Map<string, OpenUpload>();
const fileKey = (f: File) => JSON.stringify([f.name, f.size, f.lastModified]);

/** Drops an upload of a file no longer chosen (best effort: the stale-upload rule is the backstop). */
function dropOpenUpload(file: File): void {
  const up = openUploads.get(fileKey(file));
  if (!up) return;
  openUploads.delete(fileKey(file));
  void api("DELETE", `/api/uploads/${encodeURIComponent(up.id)}`).catch(() => {});
}

/** Drops every upload this page holds that no job used (the server refuses to drop a used one). */
async function dropOpenUploads(): Promise<void> {
  const ids = [...openUploads.values()].map((u) => u.id);
  openUploads.clear();
  if (pending) pending.uploads = undefined;
  await Promise.allSettled(ids.map((id) => api("DELETE", `/api/uploads/${encodeURIComponent(id)}`)));
}

/**
 * Large file through the multipart upload API: parts go up three at a time and each part is retried on its own
 * (network drop, 5xx, 429) with exponential back-off, so a blip costs one part, not the whole file.
 */
async function uploadLarge(item: Item): Promise<string> {
  let up = openUploads.get(fileKey(item.file));
  if (!up) {
    // One key for every try: a start whose answer was lost is answered with the upload it opened, not a second one.
    const key = newKey();
    const { data } = await createWithRetries(() =>
      api<{ id: string; partSize: number; partCount: number }>(
        "POST",
        "/api/uploads",
        { filename: item.file.name, size: item.file.size },
        { headers: { "Idempotency-Key": key } },
      ),
    );
    up = { id: data.id, partSize: data.partSize, partCount: data.partCount, sent: new Set(), completed: false };
    openUploads.set(fileKey(item.file), up);
  }
  const open = up;
  const partBytes = (n: number) => Math.min(item.file.size, n * open.partSize) - (n - 1) * open.partSize;
  const loaded = Array.from({ length: open.partCount }, (_, i) => (open.sent.has(i + 1) ? partBytes(i + 1) : 0));
  // Parts being retried stay visible in the state text until they succeed (progress of other parts keeps coming).
  const retrying = new Map<number, number>();
  const report = () => {
    const p = Math.min(100, Math.round((loaded.reduce((a, b) => a + b, 0) / item.file.size) * 100));
    updateProgress(item.bar, p);
    const notes = [...retrying].map(([n, attempt]) => `retrying part ${n} (attempt ${attempt} of ${PART_ATTEMPTS})`);
    setText(item.state, [`${p} %`, ...notes].join(" · "));
  };
  report();
  const missing = Array.from({ length: open.partCount }, (_, i) => i + 1).filter((n) => !open.sent.has(n));
  const next = { i: 0, failed: false };
  const worker = async () => {
    // Once one part has failed for good, the others take no new part: the click is over (what was sent is kept).
    while (!next.failed && next.i < missing.length) {
      const n = missing[next.i++]!;
      const start = (n - 1) * open.partSize;
      const blob = item.file.slice(start, start + partBytes(n));
      for (let attempt = 1; ; attempt++) {
        let failure: ApiError;
        try {
          const res = await xhrSend("PUT", `/api/uploads/${encodeURIComponent(open.id)}/parts/${n}`, blob, (l) => {
            loaded[n - 1] = l;
            report();
          });
          if (res.status === 200) {
            loaded[n - 1] = blob.size;
            open.sent.add(n);
            retrying.delete(n);
            report();
            break;
          }
          if (res.status === 401) redirectToLogin();
          failure = errorOf(res.status, res.body, res.header("retry-after"));
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          failure = err;
        }
        loaded[n - 1] = 0;
        report();
        if (!failure.retryable || attempt >= PART_ATTEMPTS) {
          next.failed = true;
          throw failure;
        }
        if (next.failed) return;
        retrying.set(n, attempt + 1);
        report();
        await sleep(Math.max(failure.retryAfterMs ?? 0, Math.min(16_000, 1000 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2)));
      }
    }
  };
  if (!open.completed) {
    // Every worker's part in flight finishes before this click ends: one still sending during the next click would
    // be sent twice, and its bytes would be missing from what this click reports as kept.
    const results = await Promise.allSettled(Array.from({ length: Math.min(PART_CONCURRENCY, missing.length) }, worker));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    // Completing twice answers the same (a retry after a lost answer).
    await createWithRetries(() => api("POST", `/api/uploads/${encodeURIComponent(open.id)}/complete`, {}));
    open.completed = true;
  }
  setText(item.state, "Sent");
  return open.id;
}

async function submit(ev: SubmitEvent): Promise<void> {
  ev.preventDefault();
  message(null);
  const input = byId<HTMLInputElement>("variations");
  const variations = Number(input.value);
  if (!Number.isInteger(variations) || variations < MIN_VARIATIONS || variations > MAX_VARIATIONS) {
    message(`Variations: choose a whole number from ${MIN_VARIATIONS} to ${MAX_VARIATIONS}.`);
    input.focus();
    return;
  }
  if (items.length === 0) {
    message("Choose at least one video.");
    return;
  }
  const effects = chosenEffects();
  if (effects.families.length === 0) {
    message("Effects: choose at least one.");
    byId("effect-color").focus();
    return;
  }
  askOnce();
  setBusy(true);
  announce("Upload started.");
  const key = keyFor(variations, effects);
  // Whether the job's create was sent: only then can a try without an answer have made it.
  let createSent = false;
  try {
    let job: Job;
    if (useMultipart(items.map((i) => i.file.size))) {
      // An earlier click with this choice stored its files but got no answer to its create: that create may have
      // made the job, so ask with its key before storing gigabytes again. Its uploads unknown (400, dropped when it
      // failed) or unusable (409 upload_*): start over. Any other refusal (quota) would refuse the new ones too.
      const earlier = pending?.uploads;
      const replay = earlier
        ? await createFromUploads(earlier, variations, effects, key).catch((err: unknown) => {
            if (err instanceof ApiError && (err.status === 400 || (err.status === 409 && err.code.startsWith("upload_")))) return null;
            throw err;
          })
        : null;
      if (replay) job = replay.job;
      else {
        // Those uploads cannot make a job (gone, or not usable): start over with new ones.
        if (earlier) await dropOpenUploads();
        const ids: string[] = [];
        for (const item of items) ids.push(await uploadLarge(item));
        pending!.uploads = ids;
        job = (await createWithRetries(() => createFromUploads(ids, variations, effects, key))).job;
      }
    } else {
      createSent = true;
      job = (await createWithRetries(() => uploadSingle(variations, effects, key))).job;
    }
    // Done: the same choice on this page again (back/forward cache) is a new job, with new uploads.
    pending = null;
    openUploads.clear();
    for (const i of items) setText(i.state, "Done");
    announce("Upload complete. Opening the job…");
    location.assign(`/jobs/${encodeURIComponent(job.id)}`);
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    // The connection or the service failed: what the server took is kept, and the next click goes on from there.
    const resumable = err instanceof ApiError && err.retryable && openUploads.size > 0;
    // No answer to the job's create (the form path holds no open uploads): it may have been made all the same.
    const maybeMade = createSent && !resumable && err instanceof ApiError && (err.status === 0 || err.status >= 500);
    if (!resumable) {
      // A refusal: dropped before the form is usable again, so a resubmit does not find them still holding the open
      // uploads. A job that a lost answer created keeps them: the server refuses to drop an upload a job uses.
      await dropOpenUploads();
    }
    setBusy(false);
    for (const i of items) {
      const up = openUploads.get(fileKey(i.file));
      const sent = up ? (up.completed ? i.file.size : [...up.sent].reduce((n, p) => n + Math.min(up.partSize, i.file.size - (p - 1) * up.partSize), 0)) : 0;
      updateProgress(i.bar, Math.round((sent / i.file.size) * 100));
      setText(i.state, up ? (up.completed ? "Sent" : `Paused at ${Math.round((sent / i.file.size) * 100)} %`) : "Ready");
    }
    message(
      resumable
        ? `Upload stopped: ${text}. Start job again to continue where it stopped; what was sent is kept.`
        : maybeMade
          ? `No answer from the server: ${text} The job may have been made anyway: Start job again with the same videos and settings, and you get that job, not a second one.`
          : `Upload failed: ${text}`,
    );
    void showUsage();
  }
}

export function initUpload(): void {
  const input = byId<HTMLInputElement>("file-input");
  const zone = byId("dropzone");
  input.addEventListener("change", () => {
    if (input.files) void addFiles(input.files);
    input.value = "";
  });
  zone.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("dragging");
    if (ev.dataTransfer?.files.length) void addFiles(ev.dataTransfer.files);
  });
  // A file dropped next to the zone would otherwise make the browser navigate away to open it.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
  byId<HTMLFormElement>("upload-form").addEventListener("submit", (ev) => void submit(ev));
  // Leaving with uploads held for a next click: drop them, so they do not hold the user's open uploads and storage
  // for a day (keepalive: the request outlives the page; a job that used one keeps it, the server refuses).
  window.addEventListener("pagehide", () => {
    for (const up of openUploads.values()) {
      void fetch(`/api/uploads/${encodeURIComponent(up.id)}`, { method: "DELETE", keepalive: true, credentials: "same-origin" }).catch(() => {});
    }
    openUploads.clear();
    if (pending) pending.uploads = undefined;
  });
  // A refusal about the effects goes once the choice changes: it must not linger over a valid choice.
  byId("effects").addEventListener("change", () => {
    if (byId("upload-message").textContent?.startsWith("Effects:")) message(null);
  });
  renderList();
  void showUsage();
}
