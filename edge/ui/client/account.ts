import { api } from "./api.js";
import { byId, formatDateTime, h, timeEl } from "./dom.js";
import { showMessage, submitOnce } from "./ui.js";

interface SessionRow {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  userAgent: string | null;
  current: boolean;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

export async function initAccount(): Promise<void> {
  const pageMessage = byId("page-message");
  const body = byId("sessions-body");
  const load = async () => {
    try {
      const { data } = await api<{ sessions: SessionRow[] }>("GET", "/api/me/sessions");
      body.replaceChildren(
        ...data.sessions.map((s) => {
          const cells = [
            h("td", {}, s.userAgent ?? "Unknown browser", s.current ? " " : null, s.current ? h("span", { class: "badge badge-info", text: "This browser" }) : null),
            h("td", {}, timeEl(s.createdAt, formatDateTime(s.createdAt))),
            h("td", {}, timeEl(s.lastSeenAt, formatDateTime(s.lastSeenAt))),
            h("td", {}, timeEl(s.expiresAt, formatDateTime(s.expiresAt))),
          ];
          if (s.current) return h("tr", {}, ...cells, h("td", {}));
          const revoke = h("button", { class: "button button-small button-danger-outline", attrs: { type: "button" }, text: "Sign out" });
          revoke.append(h("span", { class: "visually-hidden", text: ` session signed in ${formatDateTime(s.createdAt)}` }));
          revoke.addEventListener("click", async () => {
            revoke.disabled = true;
            try {
              await api("DELETE", `/api/me/sessions/${encodeURIComponent(s.id)}`);
              showMessage(pageMessage, "Session signed out.", "success");
              await load();
            } catch (err) {
              revoke.disabled = false;
              showMessage(pageMessage, errorText(err));
            }
          });
          return h("tr", {}, ...cells, h("td", {}, revoke));
        }),
      );
    } catch (err) {
      showMessage(pageMessage, errorText(err));
    }
  };

  const form = byId<HTMLFormElement>("password-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const message = byId("password-message");
    await submitOnce(form, async () => {
      showMessage(message, null);
      try {
        await api("POST", "/api/me/password", {
          currentPassword: String(data.get("currentPassword") ?? ""),
          newPassword: String(data.get("newPassword") ?? ""),
        });
        form.reset();
        showMessage(message, "Password changed. Your other sessions were signed out.", "success");
        await load();
      } catch (err) {
        showMessage(message, errorText(err));
      }
    });
  });
  await load();
}
