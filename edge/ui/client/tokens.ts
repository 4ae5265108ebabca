import { api, ApiError } from "./api.js";
import { byId, formatDateTime, h, timeEl } from "./dom.js";
import { showMessage, submitOnce } from "./ui.js";
import type { TokenRow as BaseTokenRow } from "../shared/types.js";

type TokenRow = BaseTokenRow & { scope?: "full" | "read"; expiresAt?: string | null };

export async function initTokens(): Promise<void> {
  const body = byId("tokens-body");
  const pageMessage = byId("page-message");
  const load = async () => {
    try {
      const { data } = await api<{ tokens: TokenRow[] }>("GET", "/api/tokens");
      body.replaceChildren(
        ...(data.tokens.length
          ? data.tokens.map((t) => {
              const revoke = h("button", { class: "button button-small button-danger-outline", attrs: { type: "button" }, text: "Revoke" });
              revoke.append(h("span", { class: "visually-hidden", text: ` token ${t.name}` }));
              revoke.addEventListener("click", async () => {
                if (!window.confirm(`Revoke the token “${t.name}”? Scripts using it will stop working.`)) return;
                revoke.disabled = true;
                try {
                  await api("DELETE", `/api/tokens/${encodeURIComponent(t.id)}`);
                  showMessage(pageMessage, `Revoked “${t.name}”.`, "success");
                  await load();
                } catch (err) {
                  revoke.disabled = false;
                  showMessage(pageMessage, err instanceof Error ? err.message : String(err));
                }
              });
              return h(
                "tr",
                {},
                h("td", { text: t.name }),
                h("td", { text: t.scope === "read" ? "Read-only" : "Full" }),
                h("td", {}, t.createdAt ? timeEl(t.createdAt, formatDateTime(t.createdAt)) : ""),
                h("td", {}, t.lastUsedAt ? timeEl(t.lastUsedAt, formatDateTime(t.lastUsedAt)) : "never"),
                h(
                  "td",
                  {},
                  !t.expiresAt
                    ? "never"
                    : Date.parse(t.expiresAt) <= Date.now()
                      ? h("span", { class: "badge badge-neutral", text: "Expired" })
                      : timeEl(t.expiresAt, formatDateTime(t.expiresAt)),
                ),
                h("td", {}, revoke),
              );
            })
          : [h("tr", {}, h("td", { attrs: { colspan: 6 }, class: "muted", text: "No tokens yet." }))]),
      );
    } catch (err) {
      showMessage(pageMessage, err instanceof Error ? err.message : String(err));
    }
  };
  const form = byId<HTMLFormElement>("token-form");
  /**
   * The Idempotency-Key of the token this form is making: the same for every try of one submission, so a try whose
   * answer was lost and is sent again gets that token (with a new secret) instead of a second one nobody saw. A new
   * one once a token was shown, or when the form changes.
   */
  let createKey = crypto.randomUUID();
  form.addEventListener("input", () => {
    createKey = crypto.randomUUID();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fields = new FormData(form);
    const name = String(fields.get("name") ?? "").trim();
    const scope = fields.get("scope") === "read" ? "read" : "full";
    const days = String(fields.get("expiresInDays") ?? "");
    const created = byId("token-created");
    await submitOnce(form, async () => {
      showMessage(pageMessage, null);
      try {
        const { data } = await api<{ id: string; name: string; token: string }>("POST", "/api/tokens", {
          name,
          scope,
          expiresInDays: days ? Number(days) : null,
        }, { headers: { "Idempotency-Key": createKey } });
        createKey = crypto.randomUUID();
        // Shown once: the server keeps only a hash.
        byId<HTMLInputElement>("token-value").value = data.token;
        created.hidden = false;
        byId<HTMLInputElement>("token-value").select();
        form.reset();
        await load();
      } catch (err) {
        created.hidden = true;
        // A refusal no retry of this key changes (its token was used or expired, the key is too old): the next press
        // makes a new token. A lost answer, a 5xx or a twin in flight keeps the key, so the next press gets its token.
        if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429 && err.code !== "idempotency_key_in_flight") {
          createKey = crypto.randomUUID();
        }
        showMessage(pageMessage, err instanceof Error ? err.message : String(err));
      }
    });
  });
  byId("token-copy").addEventListener("click", async () => {
    const value = byId<HTMLInputElement>("token-value").value;
    try {
      await navigator.clipboard.writeText(value);
      showMessage(pageMessage, "Token copied.", "success");
    } catch {
      byId<HTMLInputElement>("token-value").select();
      showMessage(pageMessage, "Copy failed; the token is selected, press Ctrl+C.", "info");
    }
  });
  await load();
}
