import { api, ApiError } from "./api.js";
import { keepTabInside } from "./dialog.js";
import { byId, formatDateTime, h, timeEl } from "./dom.js";
import { me } from "./session.js";
import { showMessage, submitOnce } from "./ui.js";
import type { UserRow as BaseUserRow } from "../shared/types.js";

type UserRow = BaseUserRow & { disabledAt?: string | null };

function requireAdmin(): boolean {
  if (me().role === "admin") return true;
  showMessage(byId("page-message"), "This page is for administrators.");
  return false;
}

/**
 * The runners table is rendered by the server (from the runners table); refreshing re-fetches this page and
 * swaps in its tbody. DOMParser output is inert and only ever comes from our own server-rendered, escaped page.
 */
export function initRunners(): void {
  const refresh = async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const res = await fetch(location.pathname, { headers: { accept: "text/html" }, credentials: "same-origin" });
      if (res.redirected && new URL(res.url).pathname === "/login") {
        location.assign(res.url);
        return;
      }
      if (!res.ok) throw new Error(`Refreshing failed (${res.status}).`);
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.getElementById("runners-body");
      const current = document.getElementById("runners-body");
      if (fresh && current) current.replaceWith(document.importNode(fresh, true));
      showMessage(byId("page-message"), null);
    } catch (err) {
      showMessage(byId("page-message"), err instanceof Error ? err.message : String(err), "info");
    }
  };
  window.setInterval(() => void refresh(), 10_000);
}

/**
 * The "Set password" dialog for a user who lost theirs: the admin types a new one (never shown back), the user's
 * sessions end. Resolves when the dialog closes; `onSet` runs after a password was set.
 */
function passwordDialog(onSet: (u: UserRow) => void): (u: UserRow) => void {
  const el = byId<HTMLDialogElement>("password-dialog");
  const form = byId<HTMLFormElement>("password-form");
  const input = byId<HTMLInputElement>("reset-password");
  const message = byId("password-message");
  keepTabInside(el);
  let target: UserRow | null = null;
  let opener: HTMLElement | null = null;
  el.querySelector('[data-action="keep"]')!.addEventListener("click", () => el.close());
  el.addEventListener("close", () => {
    input.value = "";
    if (opener && document.contains(opener)) opener.focus();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = target;
    if (!user) return;
    await submitOnce(form, async () => {
      showMessage(message, null);
      // The dialog may have been closed, or opened for another user, while this answer was on its way: then the
      // answer goes to the page, and the dialog (with what the admin is typing for someone else) is left alone.
      const stillFor = () => el.open && target === user;
      try {
        await api("POST", `/api/users/${encodeURIComponent(user.id)}/password`, { password: input.value });
        if (stillFor()) el.close();
        onSet(user);
      } catch (err) {
        const text = err instanceof Error ? err.message : String(err);
        if (stillFor()) showMessage(message, text);
        else showMessage(byId("page-message"), `Setting a password for ${user.email} failed: ${text}`);
      }
    });
  });
  return (u) => {
    target = u;
    opener = document.activeElement as HTMLElement | null;
    byId("password-dialog-desc").textContent = `For ${u.email}. They are signed out everywhere and sign in with the new password; their API tokens keep working.`;
    showMessage(message, null);
    input.value = "";
    el.showModal();
    input.focus();
  };
}

export async function initUsers(): Promise<void> {
  if (!requireAdmin()) return;
  const body = byId("users-body");
  const askPassword = passwordDialog((u) => showMessage(byId("page-message"), `New password set for ${u.email}; they were signed out.`, "success"));
  const load = async () => {
    try {
      const { data } = await api<{ users: UserRow[] }>("GET", "/api/users");
      body.replaceChildren(
        ...data.users.map((u) => {
          const disabled = !!u.disabledAt;
          const self = u.id === me().id;
          const toggle = h("button", {
            class: `button button-small ${disabled ? "" : "button-danger-outline"}`.trim(),
            attrs: { type: "button", disabled: self },
            text: disabled ? "Enable" : "Disable",
          });
          toggle.append(h("span", { class: "visually-hidden", text: ` ${u.email}` }));
          const setPassword = h("button", { class: "button button-small", attrs: { type: "button" }, text: "Set password" });
          setPassword.append(h("span", { class: "visually-hidden", text: ` for ${u.email}` }));
          setPassword.addEventListener("click", () => askPassword(u));
          toggle.addEventListener("click", async () => {
            // Disabling signs the user out everywhere and stops their API tokens at once.
            if (!disabled && !window.confirm(`Disable ${u.email}? They are signed out and their API tokens stop working.`)) return;
            toggle.disabled = true;
            try {
              await api("POST", `/api/users/${encodeURIComponent(u.id)}/${disabled ? "enable" : "disable"}`);
              showMessage(byId("page-message"), `${disabled ? "Enabled" : "Disabled"} ${u.email}.`, "success");
              await load();
            } catch (err) {
              toggle.disabled = false;
              showMessage(byId("page-message"), err instanceof Error ? err.message : String(err));
            }
          });
          return h(
            "tr",
            {},
            h("td", { text: u.email }),
            h("td", { text: u.role }),
            h("td", {}, u.createdAt ? timeEl(u.createdAt, formatDateTime(u.createdAt)) : ""),
            h("td", {}, disabled ? h("span", { class: "badge badge-danger", text: "Disabled" }) : h("span", { class: "badge badge-success", text: "Active" })),
            h("td", {}, self ? h("span", { class: "muted", text: "you" }) : h("div", { class: "inline" }, setPassword, toggle)),
          );
        }),
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
    await submitOnce(form, async () => {
      showMessage(message, null);
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
  });
  await load();
}
