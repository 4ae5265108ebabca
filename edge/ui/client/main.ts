import { initAccount } from "./account.js";
import { ApiError } from "./api.js";
import { initRunners, initUsers } from "./admin.js";
import { byId, setText } from "./dom.js";
import { initJob } from "./job.js";
import { initJobs } from "./jobs.js";
import { initLogin } from "./login.js";
import { initToggle } from "./notify.js";
import { loadMe, logout } from "./session.js";
import { initTokens } from "./tokens.js";
import { initUpload } from "./upload.js";
import { initWebhooks } from "./webhooks.js";
import { showMessage } from "./ui.js";

/** One entry point; the server-rendered shell says which page this is (no inline script, CSP forbids it). */
async function boot(): Promise<void> {
  const page = document.body.dataset.page ?? "";
  if (page === "login") return initLogin();
  const user = await loadMe();
  setText(byId("nav-user"), user.email);
  for (const el of document.querySelectorAll<HTMLElement>("[data-admin-only]")) el.hidden = user.role !== "admin";
  const logoutButton = byId<HTMLButtonElement>("logout");
  logoutButton.addEventListener("click", () => void logout(logoutButton));
  initToggle(byId<HTMLButtonElement>("notify-toggle"));
  switch (page) {
    case "upload":
      return initUpload();
    case "jobs":
      return initJobs();
    case "job":
      return initJob(document.body.dataset.jobId ?? "");
    case "runners":
      return user.role === "admin" ? initRunners() : undefined;
    case "users":
      return initUsers();
    case "tokens":
      return initTokens();
    case "webhooks":
      return initWebhooks();
    case "account":
      return initAccount();
  }
}

boot()
  .then(() => document.body.setAttribute("data-ready", "true"))
  .catch((err: unknown) => {
    // An API refusal reads as the API's message; anything else is a fault of this page, not for the user to decode.
    if (!(err instanceof ApiError)) console.error(err);
    const el = document.getElementById("page-message");
    if (el) showMessage(el, err instanceof ApiError ? err.message : "This page could not be loaded. Reload it to try again.");
    document.body.setAttribute("data-ready", "error");
  });
