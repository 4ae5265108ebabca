/** @jsxImportSource hono/jsx */
import { WEBHOOK_EVENTS } from "../../../db/schema/webhooks";
import { Layout } from "./layout";
import type { PageContext } from "./pages";

/** The user's webhooks: create (secret shown once), edit, rotate the secret, delete, delivery log with test event and redeliver. */
export function WebhooksPage(ctx: PageContext) {
  return (
    <Layout title="Webhooks" page="webhooks" version={ctx.version}>
      <h1>Webhooks</h1>
      <p class="muted">
        We POST a signed JSON message (Standard Webhooks: <code>webhook-id</code>, <code>webhook-timestamp</code>,{" "}
        <code>webhook-signature</code>) to your https endpoint when a job completes, is cancelled, fails or is paused.
        Failed deliveries are retried with backoff for 24 hours.
      </p>
      <form id="webhook-form" class="card stack">
        <div class="field">
          <label for="webhook-url">Endpoint URL</label>
          <input id="webhook-url" name="url" type="url" maxlength={2048} required placeholder="https://example.com/hooks/video-refresher" />
        </div>
        <fieldset class="field">
          <legend>Events</legend>
          {WEBHOOK_EVENTS.map((e) => (
            <label class="inline">
              <input type="checkbox" name="events" value={e} checked />
              <code>{e}</code>
            </label>
          ))}
        </fieldset>
        <div class="inline">
          <button id="webhook-submit" type="submit" class="button button-primary">
            Add webhook
          </button>
          <button id="webhook-edit-cancel" type="button" class="button" hidden>
            Cancel
          </button>
        </div>
      </form>
      <div id="webhook-created" class="card stack" hidden>
        <label id="webhook-secret-label" for="webhook-secret">
          Signing secret — copy it now, it will not be shown again
        </label>
        <div class="inline">
          <input id="webhook-secret" type="text" readonly class="mono" />
        </div>
      </div>
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Your webhooks</caption>
          <thead>
            <tr>
              <th scope="col">Endpoint</th>
              <th scope="col">Events</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody id="webhooks-body"></tbody>
        </table>
      </div>
      <section id="deliveries" class="card stack" hidden>
        <h2 id="deliveries-title">Deliveries</h2>
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Delivery log</caption>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Job</th>
                <th scope="col">Status</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last response</th>
                <th scope="col">Last attempt</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody id="deliveries-body"></tbody>
          </table>
        </div>
      </section>
    </Layout>
  );
}
