import { api, ApiError, messageFor, redirectToLogin, xhrSend } from "./api.js";
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
import type { ApiErrorBody, Job, JobEffects } from "../shared/types.js";

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

async function addFiles(list: FileList | File[]): Promise<void> {
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
  byId<HTMLButtonElement>("upload-submit").disabled = items.length === 0;
  setText(byId("upload-summary"), items.length ? `${items.length} video${items.length === 1 ? "" : "s"} selected` : "No videos selected yet.");
}

function setBusy(busy: boolean): void {
  byId<HTMLFieldSetElement>("upload-fields").disabled = busy;
  byId<HTMLButtonElement>("upload-submit").disabled = busy || items.length === 0;
  setText(byId("upload-submit"), busy ? "Uploading…" : "Start job");
  for (const i of items) i.remove.hidden = busy;
}

function errorFromXhr(status: number, body: unknown): ApiError {
  const b = (body ?? null) as ApiErrorBody | null;
  return new ApiError(status, b?.error?.code ?? `http_${status}`, messageFor(status, b), b);
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
 * (what it creates may exist: the key makes the retry answer it) or a server error.
 */
async function createWithRetries<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof ApiError && err.retryable) || attempt >= CREATE_ATTEMPTS) throw err;
      for (const i of items) setText(i.state, `No answer yet: trying again (${attempt + 1} of ${CREATE_ATTEMPTS})`);
      announce("The connection dropped; trying again.");
      await sleep(1000 * 2 ** (attempt - 1));
    }
  }
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
  if (res.status !== 202 && res.status !== 200 && res.status !== 201) throw errorFromXhr(res.status, res.body);
  return { job: res.body as Job, replayed: res.header("Idempotent-Replayed") === "true" };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Large file through the multipart upload API: parts go up three at a time and each part is retried on its own
 * (network drop, 5xx, 429) with exponential back-off, so a blip costs one part, not the whole file.
 */
async function uploadLarge(item: Item, started: string[]): Promise<string> {
  // One key for every try: a start whose answer was lost is answered with the upload it opened, not a second one.
  const key = newKey();
  const { data: up } = await createWithRetries(() =>
    api<{ id: string; partSize: number; partCount: number }>(
      "POST",
      "/api/uploads",
      { filename: item.file.name, size: item.file.size },
      { headers: { "Idempotency-Key": key } },
    ),
  );
  started.push(up.id);
  const loaded = new Array<number>(up.partCount).fill(0);
  // Parts being retried stay visible in the state text until they succeed (progress of other parts keeps coming).
  const retrying = new Map<number, number>();
  const report = () => {
    const p = Math.min(100, Math.round((loaded.reduce((a, b) => a + b, 0) / item.file.size) * 100));
    updateProgress(item.bar, p);
    const notes = [...retrying].map(([n, attempt]) => `retrying part ${n} (attempt ${attempt} of ${PART_ATTEMPTS})`);
    setText(item.state, [`${p} %`, ...notes].join(" · "));
  };
  const next = { n: 1, failed: false };
  const worker = async () => {
    // Once one part has failed for good, the others take no new part: the upload is about to be dropped.
    while (!next.failed && next.n <= up.partCount) {
      const n = next.n++;
      const start = (n - 1) * up.partSize;
      const blob = item.file.slice(start, Math.min(item.file.size, start + up.partSize));
      for (let attempt = 1; ; attempt++) {
        let failure: ApiError;
        try {
          const res = await xhrSend("PUT", `/api/uploads/${encodeURIComponent(up.id)}/parts/${n}`, blob, (l) => {
            loaded[n - 1] = l;
            report();
          });
          if (res.status === 200) {
            loaded[n - 1] = blob.size;
            retrying.delete(n);
            report();
            break;
          }
          if (res.status === 401) redirectToLogin();
          failure = errorFromXhr(res.status, res.body);
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
        await sleep(Math.min(16_000, 1000 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, up.partCount) }, worker));
  await api("POST", `/api/uploads/${encodeURIComponent(up.id)}/complete`, {});
  setText(item.state, "Sent");
  return up.id;
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
  // Uploads this attempt started: dropped if it fails, so they do not hold the user's open uploads and storage
  // for a day (a job that was created after all keeps its uploads: the server refuses to drop a used one).
  const started: string[] = [];
  const key = keyFor(variations, effects);
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
        const ids: string[] = [];
        for (const item of items) ids.push(await uploadLarge(item, started));
        pending!.uploads = ids;
        job = (await createWithRetries(() => createFromUploads(ids, variations, effects, key))).job;
      }
    } else {
      job = (await createWithRetries(() => uploadSingle(variations, effects, key))).job;
    }
    // Done: the same choice on this page again (back/forward cache) is a new job.
    pending = null;
    for (const i of items) setText(i.state, "Done");
    announce("Upload complete. Opening the job…");
    location.assign(`/jobs/${encodeURIComponent(job.id)}`);
  } catch (err) {
    // Dropped before the form is usable again, so a resubmit does not find them still holding the open uploads.
    // A job that the lost answer created keeps them: the server refuses to drop an upload a job uses.
    await Promise.allSettled(started.map((id) => api("DELETE", `/api/uploads/${encodeURIComponent(id)}`)));
    setBusy(false);
    for (const i of items) {
      updateProgress(i.bar, 0);
      setText(i.state, "Ready");
    }
    const text = err instanceof Error ? err.message : String(err);
    message(`Upload failed: ${text}`);
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
  // A refusal about the effects goes once the choice changes: it must not linger over a valid choice.
  byId("effects").addEventListener("change", () => {
    if (byId("upload-message").textContent?.startsWith("Effects:")) message(null);
  });
  renderList();
  void showUsage();
}
