import { api, ApiError } from "./api.js";
import { byId, formatDateTime, h, timeEl } from "./dom.js";
import { me } from "./session.js";
import { showMessage } from "./ui.js";
import { agoLabel } from "../shared/format.js";
import type { RunnerRow, UserRow } from "../shared/types.js";

/** A runner is considered gone when it has not reported for this long (it heartbeats every few seconds). */
const STALE_MS = 60_000;

function requireAdmin(): boolean {
  if (me().role === "admin") return true;
  showMessage(byId("page-message"), "This page is for administrators.");
  return false;
}

function emptyRow(cols: number, text: string): HTMLTableRowElement {
  return h("tr", {}, h("td", { attrs: { colspan: cols }, class: "muted", text }));
}

export async function initRunners(): Promise<void> {
  if (!requireAdmin()) return;
  const body = byId("runners-body");
  const load = async () => {
    try {
      const { data } = await api<{ runners: RunnerRow[] }>("GET", "/api/runners");
      const now = Date.now();
      body.replaceChildren(
        ...(data.runners.length
          ? data.runners.map((r) => {
              const stale = !r.lastSeenAt || now - Date.parse(r.lastSeenAt) > STALE_MS;
              return h(
                "tr",
                { attrs: { "data-stale": stale } },
                h("td", { text: r.host }),
                h("td", { text: r.version }),
                h("td", { text: `${r.active} / ${r.concurrency}` }),
                h("td", {}, r.lastSeenAt ? timeEl(r.lastSeenAt, agoLabel(r.lastSeenAt, now)) : "never", stale ? h("span", { class: "badge badge-neutral", text: "offline" }) : ""),
              );
            })
          : [emptyRow(4, "No runner has reported yet.")]),
      );
      showMessage(byId("page-message"), null);
    } catch (err) {
      showMessage(byId("page-message"), err instanceof Error ? err.message : String(err));
    }
  };
  await load();
  window.setInterval(() => {
    if (document.visibilityState === "visible") void load();
  }, 10_000);
}

export async function initUsers(): Promise<void> {
  if (!requireAdmin()) return;
  const body = byId("users-body");
  const load = async () => {
    try {
      const { data } = await api<{ users: UserRow[] }>("GET", "/api/users");
      body.replaceChildren(
        ...data.users.map((u) =>
          h(
            "tr",
            {},
            h("td", { text: u.email }),
            h("td", { text: u.role }),
            h("td", {}, u.createdAt ? timeEl(u.createdAt, formatDateTime(u.createdAt)) : ""),
          ),
        ),
      );
    } catch (err) {
      showMessage(byId("page-message"), err instanceof Error ? err.message : String(err));
    }
  };
  const form = byId<HTMLFormElement>("user-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const message = byId("user-message");
    try {
      const { data: created } = await api<{ user?: UserRow } & Partial<UserRow>>("POST", "/api/users", {
        email: String(data.get("email") ?? ""),
        password: String(data.get("password") ?? ""),
        role: data.get("admin") ? "admin" : "user",
      });
      const email = created.user?.email ?? created.email ?? String(data.get("email"));
      showMessage(message, `Created ${email}.`, "success");
      form.reset();
      await load();
    } catch (err) {
      showMessage(message, err instanceof ApiError || err instanceof Error ? err.message : String(err));
    }
  });
  await load();
}
