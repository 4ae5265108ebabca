/** @jsxImportSource hono/jsx */
import { DEFAULT_EFFECTS, EFFECT_FAMILIES, EFFECT_FAMILY_INFO, EFFECT_INTENSITIES, EFFECT_INTENSITY_INFO } from "../../../db/effects";
import { ACCEPT_ATTRIBUTE, MAX_FILES, MAX_VARIATIONS, MIN_VARIATIONS } from "../shared/files";
import { agoLabel } from "../shared/format";
import { Layout } from "./layout";

export interface PageContext {
  version: string;
  maxUploadBytes: number;
}

const LOGIN_NOTICES: Record<string, string> = {
  expired: "Your session has expired. Log in again to continue.",
  signin: "Log in to continue.",
};

/** `notice` is a key into fixed messages, never text from the URL, so the page cannot be made to say anything. */
export function LoginPage(ctx: PageContext, notice: keyof typeof LOGIN_NOTICES | null) {
  const text = notice ? LOGIN_NOTICES[notice] : undefined;
  return (
    <Layout title="Log in" page="login" version={ctx.version}>
      <section class="card narrow">
        <h1>Video Refresher</h1>
        <p class="muted">Log in with the account an administrator created for you.</p>
        {text ? (
          <p class="message" data-kind="info" id="login-notice">
            {text}
          </p>
        ) : null}
        <form id="login-form" class="stack" method="post">
          <div class="field">
            <label for="email">Email</label>
            <input id="email" name="email" type="email" autocomplete="username" required autofocus />
          </div>
          <div class="field">
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required />
          </div>
          <p id="login-message" class="message" role="alert" hidden></p>
          <button id="login-submit" type="submit" class="button button-primary">
            Log in
          </button>
        </form>
      </section>
    </Layout>
  );
}

export function UploadPage(ctx: PageContext) {
  return (
    <Layout title="Upload" page="upload" version={ctx.version} data={{ "max-upload-bytes": ctx.maxUploadBytes }}>
      <h1>New job</h1>
      <p id="upload-usage" class="muted" aria-live="polite" hidden></p>
      <form id="upload-form" class="card stack" novalidate>
        <fieldset id="upload-fields" class="stack">
          <legend class="visually-hidden">Videos and variations</legend>
          <div id="dropzone" class="dropzone">
            <p>
              <strong>Drop videos here</strong> or
            </p>
            <label for="file-input" class="button">
              Choose videos
            </label>
            <input id="file-input" class="file-input" type="file" multiple accept={ACCEPT_ATTRIBUTE} aria-describedby="upload-hint" />
            <p id="upload-hint" class="muted">
              MP4, MOV, M4V, WebM or MKV · up to {MAX_FILES} videos per job
            </p>
          </div>
          <p id="upload-summary" class="muted" aria-live="polite"></p>
          <ul id="upload-list" class="upload-list" aria-label="Selected videos"></ul>
          <div class="field inline">
            <label for="variations">Variations per video</label>
            <input id="variations" name="variations" type="number" inputmode="numeric" min={MIN_VARIATIONS} max={MAX_VARIATIONS} step={1} value="5" required />
            <span class="muted">
              {MIN_VARIATIONS}–{MAX_VARIATIONS}
            </span>
          </div>
          <fieldset id="effects" class="stack effects">
            <legend>Effects</legend>
            <div class="field inline">
              <label for="intensity">Intensity</label>
              <select id="intensity" name="intensity" aria-describedby="intensity-hint">
                {EFFECT_INTENSITIES.map((i) => (
                  <option value={i} selected={i === DEFAULT_EFFECTS.intensity}>
                    {i[0]!.toUpperCase() + i.slice(1)} — {EFFECT_INTENSITY_INFO[i]}
                  </option>
                ))}
              </select>
            </div>
            <p id="intensity-hint" class="muted">
              Every variation of the job gets the chosen effects, each with its own random values.
            </p>
            <ul class="effect-list">
              {EFFECT_FAMILIES.map((f) => (
                <li>
                  <input
                    id={`effect-${f}`}
                    type="checkbox"
                    name="families"
                    value={f}
                    checked={DEFAULT_EFFECTS.families.includes(f)}
                    aria-describedby={`effect-${f}-hint`}
                  />{" "}
                  <label for={`effect-${f}`}>{f[0]!.toUpperCase() + f.slice(1)}</label>{" "}
                  <span id={`effect-${f}-hint`} class="muted">
                    {EFFECT_FAMILY_INFO[f]}
                  </span>
                </li>
              ))}
            </ul>
          </fieldset>
        </fieldset>
        <p id="upload-message" class="message" role="alert" hidden></p>
        <div>
          <button id="upload-submit" type="submit" class="button button-primary" disabled>
            Start job
          </button>
        </div>
      </form>
    </Layout>
  );
}

export function JobsPage(ctx: PageContext) {
  return (
    <Layout title="Jobs" page="jobs" version={ctx.version}>
      <div class="page-head">
        <h1>Jobs</h1>
        <a class="button button-primary" href="/">
          New job
        </a>
      </div>
      <div class="toolbar" role="group" aria-label="Bulk actions">
        <label class="checkbox">
          <input id="select-all" type="checkbox" disabled /> Select all active
        </label>
        <button id="cancel-selected" type="button" class="button button-danger-outline" disabled>
          Cancel selected
        </button>
      </div>
      <p id="jobs-message" class="message" role="alert" hidden></p>
      <p id="jobs-loading" class="muted">
        Loading jobs…
      </p>
      <p id="jobs-empty" class="muted" hidden>
        No jobs yet. <a href="/">Upload videos</a> to start one.
      </p>
      <ol id="job-list" class="job-list" aria-label="Jobs, newest first"></ol>
      <button id="jobs-more" type="button" class="button" hidden>
        Load more
      </button>
    </Layout>
  );
}

export function JobPage(ctx: PageContext, jobId: string) {
  return (
    <Layout title="Job" page="job" version={ctx.version} data={{ "job-id": jobId }}>
      <p class="breadcrumb">
        <a href="/jobs">← All jobs</a>
      </p>
      <h1 id="job-title">Job</h1>
      <p id="job-loading" class="muted">
        Loading…
      </p>
      <p id="job-message" class="message" role="alert" hidden></p>
      <div id="job" class="job-detail" hidden></div>
    </Layout>
  );
}

export interface RunnerView {
  id: string;
  host: string;
  version: string;
  concurrency: number;
  active: number;
  lastSeenAt: number;
}

/** A runner that has not reported for this long is shown as offline (they heartbeat every few seconds). */
export const RUNNER_STALE_MS = 60_000;

/**
 * Server-rendered from the runners table (there is no JSON endpoint for it); the client refreshes the table by
 * re-fetching this page. `runners` is null when the viewer is not an administrator.
 */
export function RunnersPage(ctx: PageContext, runners: RunnerView[] | null, now: number) {
  return (
    <Layout title="Runners" page="runners" version={ctx.version}>
      <h1>Runners</h1>
      {runners === null ? null : <p class="muted">A runner that stops reporting shows as offline for a day, then is removed.</p>}
      {runners === null ? (
        <p class="message">This page is for administrators.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Runners, most recently seen first</caption>
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">Version</th>
                <th scope="col">Active / concurrency</th>
                <th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody id="runners-body">
              {runners.length === 0 ? (
                <tr>
                  <td colspan={4} class="muted">
                    No runner has reported yet.
                  </td>
                </tr>
              ) : (
                runners.map((r) => {
                  const stale = now - r.lastSeenAt > RUNNER_STALE_MS;
                  const iso = new Date(r.lastSeenAt).toISOString();
                  return (
                    <tr data-runner-id={r.id} data-stale={stale ? "" : undefined}>
                      <td>{r.host}</td>
                      <td>{r.version}</td>
                      <td>
                        {r.active} / {r.concurrency}
                      </td>
                      <td>
                        <time datetime={iso}>{agoLabel(iso, now)}</time>{" "}
                        {stale ? <span class="badge badge-neutral">offline</span> : <span class="badge badge-success">online</span>}
                      </td>
                    </tr>
                  );
                })
              )}
            </tbody>
          </table>
        </div>
      )}
    </Layout>
  );
}

export function UsersPage(ctx: PageContext) {
  return (
    <Layout title="Users" page="users" version={ctx.version}>
      <h1>Users</h1>
      <form id="user-form" class="card stack">
        <h2>Create a user</h2>
        <div class="field">
          <label for="new-email">Email</label>
          <input id="new-email" name="email" type="email" autocomplete="off" required />
        </div>
        <div class="field">
          <label for="new-password">Password</label>
          <input id="new-password" name="password" type="password" autocomplete="new-password" minlength={12} required />
        </div>
        <label class="checkbox">
          <input name="admin" type="checkbox" /> Administrator
        </label>
        <p id="user-message" class="message" role="alert" hidden></p>
        <div>
          <button type="submit" class="button button-primary">
            Create user
          </button>
        </div>
      </form>
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Users</caption>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Created</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody id="users-body"></tbody>
        </table>
      </div>
      <dialog id="password-dialog" class="dialog" aria-labelledby="password-dialog-title" aria-describedby="password-dialog-desc">
        <form id="password-form" method="dialog">
          <h2 id="password-dialog-title">Set a new password</h2>
          <p id="password-dialog-desc"></p>
          <div class="field">
            <label for="reset-password">New password</label>
            <input id="reset-password" name="password" type="password" autocomplete="new-password" minlength={12} required />
          </div>
          <p id="password-message" class="message" role="alert" hidden></p>
          <div class="dialog-actions">
            <button type="button" class="button" data-action="keep">
              Cancel
            </button>
            <button type="submit" class="button button-primary">
              Set password
            </button>
          </div>
        </form>
      </dialog>
    </Layout>
  );
}

export function TokensPage(ctx: PageContext) {
  return (
    <Layout title="API tokens" page="tokens" version={ctx.version}>
      <h1>API tokens</h1>
      <p class="muted">
        Tokens let scripts use the API as you: send <code>Authorization: Bearer &lt;token&gt;</code>.
      </p>
      <form id="token-form" class="card stack">
        <div class="field">
          <label for="token-name">Token name</label>
          <input id="token-name" name="name" type="text" maxlength={100} required placeholder="e.g. nightly batch" />
        </div>
        <div class="field">
          <label for="token-scope">Access</label>
          <select id="token-scope" name="scope">
            <option value="full">Full (read and change)</option>
            <option value="read">Read-only</option>
          </select>
        </div>
        <div class="field">
          <label for="token-expiry">Expires</label>
          <select id="token-expiry" name="expiresInDays">
            <option value="">Never</option>
            <option value="7">In 7 days</option>
            <option value="30">In 30 days</option>
            <option value="90">In 90 days</option>
            <option value="365">In a year</option>
          </select>
        </div>
        <div>
          <button type="submit" class="button button-primary">
            Create token
          </button>
        </div>
      </form>
      <div id="token-created" class="card stack" hidden>
        <label for="token-value">New token — copy it now, it will not be shown again</label>
        <div class="inline">
          <input id="token-value" type="text" readonly class="mono" />
          <button id="token-copy" type="button" class="button">
            Copy
          </button>
        </div>
      </div>
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Your API tokens</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Access</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody id="tokens-body"></tbody>
        </table>
      </div>
    </Layout>
  );
}
