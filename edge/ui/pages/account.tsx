/** @jsxImportSource hono/jsx */
import { MIN_PASSWORD_LENGTH } from "../../../db/passwords";
import { Layout } from "./layout";
import type { PageContext } from "./pages";

/** The signed-in user's own account: change password, and the sessions signed in as them (with revoke). */
export function AccountPage(ctx: PageContext) {
  return (
    <Layout title="Account" page="account" version={ctx.version}>
      <h1>Account</h1>
      <form id="password-form" class="card stack">
        <h2>Change password</h2>
        <p class="muted">Your other sessions are signed out; this one stays. API tokens keep working.</p>
        <div class="field">
          <label for="current-password">Current password</label>
          <input id="current-password" name="currentPassword" type="password" autocomplete="current-password" required />
        </div>
        <div class="field">
          <label for="new-password">New password</label>
          <input
            id="new-password"
            name="newPassword"
            type="password"
            autocomplete="new-password"
            minlength={MIN_PASSWORD_LENGTH}
            required
            aria-describedby="new-password-hint"
          />
          <p id="new-password-hint" class="muted">
            At least {MIN_PASSWORD_LENGTH} characters; common passwords are refused.
          </p>
        </div>
        <p id="password-message" class="message" role="alert" hidden></p>
        <div>
          <button type="submit" class="button button-primary">
            Change password
          </button>
        </div>
      </form>
      <h2>Sessions</h2>
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Browsers signed in to your account</caption>
          <thead>
            <tr>
              <th scope="col">Browser</th>
              <th scope="col">Signed in</th>
              <th scope="col">Last active</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody id="sessions-body"></tbody>
        </table>
      </div>
    </Layout>
  );
}
