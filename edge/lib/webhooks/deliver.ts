import type { Db } from "../../../db/client";
import { NotFoundError } from "../../../db/errors";
import { getJob } from "../../../db/queries/jobs";
import {
  claimDelivery,
  DELIVERY_WINDOW_MS,
  peekDelivery,
  recordDeliveryAttempt,
  type AttemptOutcome,
  type ClaimedDelivery,
  type DueDelivery,
} from "../../../db/queries/webhooks";
import { checkWebhookUrl, type AddressPolicy } from "./address";
import { webhookHeaders } from "./signature";

/** One attempt may take this long; the lease outlasts it so no second consumer sends the row meanwhile. */
const SEND_TIMEOUT_MS = 15_000;
const LEASE_MS = 60_000;

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
 * What the consumer does next with the row: nothing, or look again after `retryInMs`. `settled`: this attempt ended
 * the delivery (delivered or failed) and its endpoint is free for its next row.
 */
export type DeliverResult =
  | { done: true; status: string; settled?: { webhookId: string } }
  | { done: false; retryInMs: number; /** Not attempted: its endpoint was busy. */ busy?: true };

/** A send the user asked for (test, redelivery) that found its endpoint busy with another send looks again after this. */
const BUSY_RETRY_MS = 5_000;

/**
 * One attempt at one delivery: look (skip when not due, held or finished), build the body unless one is stored,
 * claim (which stores the body with the attempt, so every later attempt sends the same bytes), sign, POST without
 * following redirects, record. Only 2xx counts as delivered. Nothing that can fail before the send (reading the
 * job) runs after the claim, so an attempt is counted only when a send follows it. One send per endpoint at a time,
 * and an endpoint backing off after a failure waits as a whole (db/queries/webhooks/endpoint-hold.ts); `manual`
 * (the user's own test or redelivery) skips the backoff, not the one-at-a-time.
 */
export async function deliverOnce(deps: DeliverDeps, id: string, now: number, opts: { manual?: boolean } = {}): Promise<DeliverResult> {
  const started = Date.now();
  // On the caller's clock (tests pass their own `now`), advanced by the time spent since.
  const clock = () => now + (Date.now() - started);
  const due = await peekDelivery(deps.db, id, now);
  if (!due) return { done: true, status: "skipped" };
  const built = due.payload ?? (await buildPayload(deps.db, due));
  const claimed = await claimDelivery(deps.db, id, clock(), LEASE_MS, built, { manual: opts.manual });
  // Not claimed: a duplicate message's row is taken, or its endpoint is busy. A sweep brings a row back once its
  // endpoint is free; a send the user asked for looks again soon instead (a duplicate then finds nothing to do).
  if (!claimed) return opts.manual ? { done: false, retryInMs: BUSY_RETRY_MS, busy: true } : { done: true, status: "skipped" };
  const body = claimed.payload;
  const sent = await send(deps, claimed, body);
  const finished = clock();
  let outcome: AttemptOutcome;
  if (sent.ok) outcome = { kind: "delivered", statusCode: sent.statusCode! };
  else if (
    claimed.attempts >= MAX_DELIVERY_ATTEMPTS ||
    sent.permanent ||
    finished + backoffMs(claimed.attempts) >= claimed.seriesStartedAt + DELIVERY_WINDOW_MS
  ) {
    outcome = { kind: "failed", statusCode: sent.statusCode, error: sent.error };
  } else {
    outcome = { kind: "retry", statusCode: sent.statusCode, error: sent.error, nextAttemptAt: finished + backoffMs(claimed.attempts) };
  }
  const status = await recordDeliveryAttempt(deps.db, { id, webhookId: claimed.webhookId, attempt: claimed.attempts, payload: body, outcome }, finished);
  if (outcome.kind === "retry" && status === "pending") return { done: false, retryInMs: outcome.nextAttemptAt - finished };
  if (status === "delivered" || status === "failed") return { done: true, status, settled: { webhookId: claimed.webhookId } };
  return { done: true, status: status ?? "superseded" };
}

/** `{ type, timestamp, data }`, data = the job exactly as GET /api/jobs/:id shows it to its owner at the first attempt. */
async function buildPayload(db: Db, d: DueDelivery): Promise<string> {
  let data: unknown;
  try {
    data = await getJob(db, { jobId: d.jobId!, viewer: { id: d.userId, email: "", role: "user" } }, Date.now());
  } catch (err) {
    // Deleted before the first attempt (the owner deleted it, or it expired): the event still happened.
    if (!(err instanceof NotFoundError)) throw err;
    data = { id: d.jobId, status: d.event.replace(/^job\./, ""), deleted: true };
  }
  return JSON.stringify({ type: d.event, timestamp: new Date(d.occurredAt).toISOString(), data });
}

async function send(
  deps: DeliverDeps,
  d: ClaimedDelivery,
  body: string,
): Promise<{ ok: boolean; statusCode: number | null; error: string; permanent?: boolean }> {
  // Checked again at every attempt: the policy may have changed since the webhook was created.
  const verdict = checkWebhookUrl(d.url, deps.policy);
  if (!verdict.ok) return { ok: false, statusCode: null, error: verdict.message, permanent: true };
  try {
    const res = await (deps.fetch ?? fetch)(verdict.url, {
      method: "POST",
      headers: await webhookHeaders(d.secret, d.id, Date.now(), body),
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
