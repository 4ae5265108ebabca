import { api, ApiError } from "./api.js";
import { byId } from "./dom.js";
import { showMessage } from "./ui.js";
import { safeNext } from "../shared/format.js";

export function initLogin(): void {
  const form = byId<HTMLFormElement>("login-form");
  const message = byId("login-message");
  const submit = byId<HTMLButtonElement>("login-submit");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    showMessage(message, null);
    submit.disabled = true;
    try {
      await api("POST", "/api/auth/login", { email: String(data.get("email") ?? ""), password: String(data.get("password") ?? "") }, { allow401: true });
      location.assign(safeNext(new URLSearchParams(location.search).get("next")));
    } catch (err) {
      submit.disabled = false;
      if (err instanceof ApiError && err.status === 401) {
        showMessage(message, "Wrong email or password.");
        byId<HTMLInputElement>("password").select();
      } else {
        showMessage(message, err instanceof Error ? err.message : String(err));
      }
    }
  });
}
