import type { Db } from "../../../db/client";
import { NotFoundError } from "../../../db/errors";
import { getJob } from "../../../db/queries/jobs";
import {
  claimDelivery,
  DELIVERY_WINDOW_MS,
  EXPIRED_ERROR,
  isEndpointFailure,
  peekDelivery,
  recordDeliveryAttempt,
  releaseEnqueuedDeliveries,
  type AttemptOutcome,
  type ClaimedDelivery,
  type DueDelivery,
  type EndpointVerdict,
  signingSecrets,
} from "../../../db/queries/webhooks";
import { checkWebhookUrl, type AddressPolicy } from "./address";
import { webhookHeaders } from "./signature";

/** One attempt may take this long; the lease outlasts it so no second consumer sends the row meanwhile. */
const SEND_TIMEOUT_MS = 15_000;
const LEASE_MS = 60_000;
/** An endpoint's failures in a row are forgotten this long after its last hold ended. */
const ENDPOINT_FAILURES_FORGOTTEN_MS = 3_600_000;

/** Backoff before attempt n+1 after attempt n failed: 5 s doubling, at most 1 h. */
export function backoffMs(attempt: number): number {
  return Math.min(5_000 * 2 ** Math.max(attempt - 1, 0), 3_600_000);
}

/** Attempts in one retry series: the sum of the backoffs before the last one reaches 24 h, then the delivery fails. */
export const MAX_DELIVERY_ATTEMPTS = (() => {
  let n = 1;
  for (let waited = 0; waited < 24 * 3_600_000; n++) waited += backoffMs(n);
  return n;
})();

export interface DeliverDeps {
  db: Db;
  policy: AddressPolicy;
  fetch?: typeof fetch;
}

/**
 * What the consumer does next: with the row, nothing (`done`) or look again after `retryInMs`; with its endpoint,
 * `next` when the endpoint answered, so its next due row may go right away.
 */
export type DeliverResult = ({ done: true } | { done: false; retryInMs: number }) & { status: string; next?: { webhookId: string } };

/**
 * One attempt at one delivery: look (skip when not due, held or finished), build the body unless one is stored,
 * claim (which stores the body with the attempt, so every later attempt sends the same bytes), sign, POST without
 * following redirects, record. Only 2xx counts as delivered. Nothing that can fail before the send (reading the
 * job) runs after the claim, so an attempt is counted only when a send follows it. One send per endpoint at a time,
 * and an endpoint that fails is held as a whole, backing off with its failures in a row
 * (db/queries/webhooks/endpoint-hold.ts); the user's own untried test or redelivery skips the hold, not the
 * one-at-a-time.
 */
export async function deliverOnce(deps: DeliverDeps, id: string, now: number): Promise<DeliverResult> {
  const started = Date.now();
  // On the caller's clock (tests pass their own `now`), advanced by the time spent since.
  const clock = () => now + (Date.now() - started);
  const due = await peekDelivery(deps.db, id, now);
  if (!due) return { done: true, status: "skipped" };
  const built = due.payload ?? (await buildPayload(deps.db, due));
  const claimed = await claimDelivery(deps.db, id, clock(), LEASE_MS, built);
  if (!claimed) {
    // A duplicate message (the row is taken), or its endpoint is busy or held. Its queued mark goes, so the next
    // sweep — or the settling send's look for its endpoint's next row, which takes what the user sent by hand
    // first — takes it once the endpoint is free, instead of after the mark's minute.
    await releaseEnqueuedDeliveries(deps.db, [id]);
    return { done: true, status: "skipped" };
  }
  const body = claimed.payload;
  const sent = await send(deps, claimed, body, signingSecrets(claimed.secret, claimed.retiringSecrets, clock()));
  const finished = clock();
  const endpointDown = !sent.ok && !sent.permanent && isEndpointFailure(sent.statusCode);
  // The endpoint's own backoff when it failed (whichever of its deliveries was tried), else this delivery's.
  // Failures in a row count from scratch once the last hold is an hour past: an endpoint that failed long ago and
  // then had nothing to receive is not held for the full hour by its next single hiccup.
  const stale = claimed.endpointHeldUntil !== null && finished - claimed.endpointHeldUntil > ENDPOINT_FAILURES_FORGOTTEN_MS;
  const failures = (stale ? 0 : claimed.endpointFailures) + 1;
  const retryAt = finished + backoffMs(endpointDown ? failures : claimed.attempts);
  const windowEnd = claimed.seriesStartedAt + DELIVERY_WINDOW_MS;
  let outcome: AttemptOutcome;
  if (sent.ok) outcome = { kind: "delivered", statusCode: sent.statusCode! };
  else if (claimed.attempts >= MAX_DELIVERY_ATTEMPTS || sent.permanent || retryAt >= windowEnd) {
    const error = !sent.permanent && retryAt >= windowEnd ? `${sent.error}; ${EXPIRED_ERROR}` : sent.error;
    outcome = { kind: "failed", statusCode: sent.statusCode, error };
  } else {
    outcome = { kind: "retry", statusCode: sent.statusCode, error: sent.error, nextAttemptAt: retryAt };
  }
  const endpoint: EndpointVerdict = endpointDown ? { answered: false, failures, heldUntil: retryAt } : { answered: true };
  const status = await recordDeliveryAttempt(deps.db, { id, webhookId: claimed.webhookId, url: claimed.url, attempt: claimed.attempts, claimedAt: claimed.claimedAt, payload: body, outcome, endpoint }, finished);
  // The endpoint failed: no message of this row's own is queued for when the hold ends. The sweep then picks the
  // endpoint's next try (pickOrder), so a payload it cannot take is not its only probe for the rest of the day.
  if (endpointDown) return { done: true, status: status === "pending" ? "held" : (status ?? "superseded") };
  const next = { webhookId: claimed.webhookId };
  if (outcome.kind === "retry" && status === "pending") return { done: false, retryInMs: outcome.nextAttemptAt - finished, status, next };
  return { done: true, status: status ?? "superseded", next };
}

/**
 * The job exactly as GET /api/jobs/:id shows it to its owner at the first attempt, in the Standard Webhooks envelope
 * `{ type, timestamp, data }`: its fields both at the top level (the contract: "payload = the job") and under `data`
 * (what Standard Webhooks consumers read). A Job has no field of the envelope's names, so neither hides the other.
 */
async function buildPayload(db: Db, d: DueDelivery): Promise<string> {
  let data: object;
  try {
    data = await getJob(db, { jobId: d.jobId!, viewer: { id: d.userId, email: "", role: "user" } }, Date.now());
  } catch (err) {
    // Deleted before the first attempt (the owner deleted it, or it expired): the event still happened.
    if (!(err instanceof NotFoundError)) throw err;
    data = { id: d.jobId, status: d.event.replace(/^job\./, ""), deleted: true };
  }
  return JSON.stringify({ ...data, type: d.event, timestamp: new Date(d.occurredAt).toISOString(), data });
}

async function send(
  deps: DeliverDeps,
  d: ClaimedDelivery,
  body: string,
  secrets: readonly string[],
): Promise<{ ok: boolean; statusCode: number | null; error: string; permanent?: boolean }> {
  // Checked again at every attempt: the policy may have changed since the webhook was created.
  const verdict = checkWebhookUrl(d.url, deps.policy);
  if (!verdict.ok) return { ok: false, statusCode: null, error: verdict.message, permanent: true };
  try {
    const res = await (deps.fetch ?? fetch)(verdict.url, {
      method: "POST",
      headers: await webhookHeaders(secrets, d.id, Date.now(), body),
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
    });
    await res.body?.cancel().catch(() => {});
    if (res.status >= 200 && res.status < 300) return { ok: true, statusCode: res.status, error: "" };
    const why = res.status >= 300 && res.status < 400 ? "redirects are not followed" : `HTTP ${res.status}`;
    return { ok: false, statusCode: res.status, error: why };
  } catch (err) {
    const name = (err as { name?: string })?.name;
    const error = name === "TimeoutError" ? `no response within ${SEND_TIMEOUT_MS / 1000} s` : `connection failed: ${(err as Error)?.message ?? String(err)}`;
    return { ok: false, statusCode: null, error };
  }
}
