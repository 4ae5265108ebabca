import { api } from "./api.js";
import { byId, formatDateTime, h, timeEl } from "./dom.js";
import { showMessage } from "./ui.js";

interface WebhookRow {
  id: string;
  url: string;
  events: string[];
  createdAt: string;
}
interface DeliveryRow {
  id: string;
  event: string;
  jobId: string | null;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  lastAttemptAt: string | null;
  nextAttemptAt: string | null;
}

const STATUS_BADGE: Record<DeliveryRow["status"], string> = { pending: "badge-neutral", delivered: "badge-success", failed: "badge-danger" };

/** Everything user-controlled (URLs, errors) goes in as text nodes, never as HTML. */
export async function initWebhooks(): Promise<void> {
  const body = byId("webhooks-body");
  const pageMessage = byId("page-message");
  const fail = (err: unknown) => showMessage(pageMessage, err instanceof Error ? err.message : String(err));
  let shown: WebhookRow | null = null;
  // Only the newest load may fill the table: "Deliveries" on A then on B, with A's answer arriving last, showed
  // A's rows under B's title.
  let loads = 0;

  const loadDeliveries = async (w: WebhookRow) => {
    shown = w;
    const mine = ++loads;
    const section = byId("deliveries");
    byId("deliveries-title").textContent = `Deliveries to ${w.url}`;
    section.hidden = false;
    const { data } = await api<{ deliveries: DeliveryRow[] }>("GET", `/api/webhooks/${encodeURIComponent(w.id)}/deliveries`);
    if (mine !== loads) return;
    byId("deliveries-body").replaceChildren(
      ...(data.deliveries.length
        ? data.deliveries.map((d) => {
            const redeliver = h("button", { class: "button button-small", attrs: { type: "button", disabled: d.status === "pending" }, text: "Redeliver" });
            redeliver.addEventListener("click", async () => {
              redeliver.disabled = true;
              try {
                await api("POST", `/api/webhooks/${encodeURIComponent(w.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`);
                showMessage(pageMessage, "Queued for redelivery.", "success");
                await loadDeliveries(w);
              } catch (err) {
                redeliver.disabled = false;
                fail(err);
              }
            });
            const response = d.lastStatusCode !== null ? `HTTP ${d.lastStatusCode}` : d.lastError ?? "—";
            return h(
              "tr",
              { attrs: { "data-delivery-id": d.id } },
              h("td", {}, h("code", { text: d.event })),
              h("td", {}, d.jobId ? h("a", { attrs: { href: `/jobs/${encodeURIComponent(d.jobId)}` }, text: d.jobId }) : "—"),
              h("td", {}, h("span", { class: `badge ${STATUS_BADGE[d.status]}`, text: d.status })),
              h("td", { text: String(d.attempts) }),
              h("td", { text: response, attrs: { title: d.lastError ?? "" } }),
              h("td", {}, d.lastAttemptAt ? timeEl(d.lastAttemptAt, formatDateTime(d.lastAttemptAt)) : "—"),
              h("td", {}, redeliver),
            );
          })
        : [h("tr", {}, h("td", { attrs: { colspan: 7 }, class: "muted", text: "No deliveries yet." }))]),
    );
  };

  const load = async () => {
    try {
      const { data } = await api<{ webhooks: WebhookRow[] }>("GET", "/api/webhooks");
      body.replaceChildren(
        ...(data.webhooks.length
          ? data.webhooks.map((w) => {
              const log = h("button", { class: "button button-small", attrs: { type: "button" }, text: "Deliveries" });
              log.addEventListener("click", () => void loadDeliveries(w).catch(fail));
              const test = h("button", { class: "button button-small", attrs: { type: "button" }, text: "Send test event" });
              test.addEventListener("click", async () => {
                try {
                  await api("POST", `/api/webhooks/${encodeURIComponent(w.id)}/test`);
                  showMessage(pageMessage, "Test event queued.", "success");
                  await loadDeliveries(w);
                } catch (err) {
                  fail(err);
                }
              });
              const rotate = h("button", { class: "button button-small", attrs: { type: "button" }, text: "Rotate secret" });
              rotate.addEventListener("click", async () => {
                const ask = `Give ${w.url} a new signing secret? The current one keeps signing next to it for 24 hours: switch your endpoint to the new one before then.`;
                if (!window.confirm(ask)) return;
                try {
                  const { data } = await api<{ secret: string; previousSecretsValidUntil: string | null }>(
                    "POST",
                    `/api/webhooks/${encodeURIComponent(w.id)}/rotate-secret`,
                  );
                  const until = data.previousSecretsValidUntil ? ` The old one signs too until ${formatDateTime(data.previousSecretsValidUntil)}.` : "";
                  showSecret(data.secret, `New signing secret for ${w.url} — copy it now, it will not be shown again.${until}`);
                  showMessage(pageMessage, null);
                } catch (err) {
                  fail(err);
                }
              });
              const edit = h("button", { class: "button button-small", attrs: { type: "button" }, text: "Edit" });
              edit.addEventListener("click", () => startEditing(w));
              const del = h("button", { class: "button button-small button-danger-outline", attrs: { type: "button" }, text: "Delete" });
              del.addEventListener("click", async () => {
                if (!window.confirm(`Delete the webhook to ${w.url}? Its delivery log goes with it.`)) return;
                try {
                  await api("DELETE", `/api/webhooks/${encodeURIComponent(w.id)}`);
                  if (shown?.id === w.id) byId("deliveries").hidden = true;
                  if (editing?.id === w.id) stopEditing();
                  showMessage(pageMessage, "Webhook deleted.", "success");
                  await load();
                } catch (err) {
                  fail(err);
                }
              });
              return h(
                "tr",
                { attrs: { "data-webhook-id": w.id } },
                h("td", {}, h("code", { text: w.url })),
                h("td", { text: w.events.join(", ") }),
                h("td", {}, timeEl(w.createdAt, formatDateTime(w.createdAt))),
                h("td", { class: "inline" }, log, test, edit, rotate, del),
              );
            })
          : [h("tr", {}, h("td", { attrs: { colspan: 4 }, class: "muted", text: "No webhooks yet." }))]),
      );
    } catch (err) {
      fail(err);
    }
  };

  /** Shown once: the API never returns a secret again. Text only (the label names the user's URL). */
  const showSecret = (secret: string, label: string) => {
    byId("webhook-secret-label").textContent = label;
    byId<HTMLInputElement>("webhook-secret").value = secret;
    byId("webhook-created").hidden = false;
    byId<HTMLInputElement>("webhook-secret").select();
  };

  const form = byId<HTMLFormElement>("webhook-form");
  const submit = byId<HTMLButtonElement>("webhook-submit");
  const cancelEdit = byId<HTMLButtonElement>("webhook-edit-cancel");
  /** The webhook the form is changing; null: the form adds one. */
  let editing: WebhookRow | null = null;
  /**
   * The Idempotency-Key of the webhook this form is adding: the same for every try of one submission, so a try whose
   * answer was lost and is sent again gets that webhook (and its secret) back instead of a second subscription.
   * A new one once it was created, or when the form changes to another webhook.
   */
  let createKey = crypto.randomUUID();
  const stopEditing = () => {
    editing = null;
    form.reset();
    submit.textContent = "Add webhook";
    cancelEdit.hidden = true;
    createKey = crypto.randomUUID();
  };
  const startEditing = (w: WebhookRow) => {
    editing = w;
    byId<HTMLInputElement>("webhook-url").value = w.url;
    for (const box of form.querySelectorAll<HTMLInputElement>('input[name="events"]')) box.checked = w.events.includes(box.value);
    submit.textContent = "Save changes";
    cancelEdit.hidden = false;
    byId<HTMLInputElement>("webhook-url").focus();
  };
  cancelEdit.addEventListener("click", stopEditing);
  form.addEventListener("input", () => {
    if (!editing) createKey = crypto.randomUUID();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fields = new FormData(form);
    const body = { url: String(fields.get("url") ?? "").trim(), events: fields.getAll("events").map(String) };
    const created = byId("webhook-created");
    try {
      if (editing) {
        await api("PATCH", `/api/webhooks/${encodeURIComponent(editing.id)}`, body);
        const changed = editing;
        stopEditing();
        if (shown?.id === changed.id) byId("deliveries").hidden = true;
        showMessage(pageMessage, "Webhook changed.", "success");
      } else {
        const { data } = await api<{ secret: string }>("POST", "/api/webhooks", body, { headers: { "Idempotency-Key": createKey } });
        showSecret(data.secret, "Signing secret — copy it now, it will not be shown again");
        stopEditing();
        showMessage(pageMessage, null);
      }
      await load();
    } catch (err) {
      if (!editing) created.hidden = true;
      fail(err);
    }
  });
  await load();
}
