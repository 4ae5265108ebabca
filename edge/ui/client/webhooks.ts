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

  const loadDeliveries = async (w: WebhookRow) => {
    shown = w;
    const section = byId("deliveries");
    byId("deliveries-title").textContent = `Deliveries to ${w.url}`;
    section.hidden = false;
    const { data } = await api<{ deliveries: DeliveryRow[] }>("GET", `/api/webhooks/${encodeURIComponent(w.id)}/deliveries`);
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
              const del = h("button", { class: "button button-small button-danger-outline", attrs: { type: "button" }, text: "Delete" });
              del.addEventListener("click", async () => {
                if (!window.confirm(`Delete the webhook to ${w.url}? Its delivery log goes with it.`)) return;
                try {
                  await api("DELETE", `/api/webhooks/${encodeURIComponent(w.id)}`);
                  if (shown?.id === w.id) byId("deliveries").hidden = true;
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
                h("td", { class: "inline" }, log, test, rotate, del),
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
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fields = new FormData(form);
    const created = byId("webhook-created");
    try {
      const { data } = await api<{ secret: string }>("POST", "/api/webhooks", {
        url: String(fields.get("url") ?? "").trim(),
        events: fields.getAll("events").map(String),
      });
      showSecret(data.secret, "Signing secret — copy it now, it will not be shown again");
      form.reset();
      showMessage(pageMessage, null);
      await load();
    } catch (err) {
      created.hidden = true;
      fail(err);
    }
  });
  await load();
}
