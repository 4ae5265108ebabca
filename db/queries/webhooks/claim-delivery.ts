import { sql } from "drizzle-orm";
import type { Db } from "../../client";
import { webhookDeliveries, webhooks } from "../../schema";
import { endpointFreeFor } from "./endpoint-hold";
import { accountDisabled } from "../states";
import { withinWindow } from "./expire-deliveries";

/** A delivery a consumer may attempt now: what building its body needs (peekDelivery). */
export interface DueDelivery {
  id: string;
  event: string;
  jobId: string | null;
  occurredAt: number;
  /** The stored body (set by the first claim, or at creation for test events); null until then. */
  payload: string | null;
  userId: string;
}

export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  event: string;
  jobId: string | null;
  occurredAt: number;
  /** This attempt's number (1-based within the current retry series): with `claimedAt`, the ownership of the recordDeliveryAttempt CAS. */
  attempts: number;
  /**
   * When this claim took the row (its `last_attempt_at`). The attempt number alone is not unique: a redelivery starts
   * a new series at 0, so a consumer that stalled past its lease could record over the new series' first attempt.
   */
  claimedAt: number;
  /** The body every attempt of this delivery sends: stored by its first claim, never rebuilt. */
  payload: string;
  /** Start of its 24-hour delivery window (creation, or the last redelivery). */
  seriesStartedAt: number;
  /** Its endpoint's failed attempts in a row so far (the hold after another failure backs off with it). */
  endpointFailures: number;
  /** Its endpoint's hold, if it ever had one that no answer has cleared since (possibly long past). */
  endpointHeldUntil: number | null;
  url: string;
  secret: string;
  /** `webhooks.retiring_secrets`: replaced secrets that may still sign (signingSecrets). */
  retiringSecrets: string | null;
  userId: string;
}

const claimable = (now: number) =>
  sql`status = 'pending' AND next_attempt_at <= ${now} AND (lease_until IS NULL OR lease_until < ${now})`;

/** A read: is the delivery due and free, and what does its body need. Null: not due, held, done or gone. */
export async function peekDelivery(db: Db, id: string, now: number): Promise<DueDelivery | null> {
  const rows = await db.all<DueDelivery>(sql`
    SELECT d.id, d.event, d.job_id AS jobId, d.occurred_at AS occurredAt, d.payload, w.user_id AS userId
    FROM ${webhookDeliveries} d JOIN ${webhooks} w ON w.id = d.webhook_id
    WHERE d.id = ${id} AND d.status = 'pending' AND d.next_attempt_at <= ${now}
      AND (d.lease_until IS NULL OR d.lease_until < ${now}) AND NOT ${accountDisabled(sql`w.user_id`)}`);
  return rows[0] ?? null;
}

/**
 * Takes a due pending delivery for one send: counts the attempt, leases the row for `leaseMs` (so a second queue
 * message for it finds it taken and is dropped) and stores `payload` as its body unless one is stored already —
 * in the same compare-and-set, so the body is fixed before the first byte goes out and every later attempt (after
 * a consumer died mid-send, too) sends exactly those bytes. The caller builds `payload` before claiming, so a
 * failure to build it counts no attempt and holds no lease. A consumer that dies mid-send leaves the lease to run
 * out; the sweep then enqueues the row again. Its endpoint must be free too (endpoint-hold.ts): nothing else of
 * it being sent, nor — unless the row is the user's own untried test or redelivery — held after a failure; and the row inside
 * its 24-hour window. Clears the row's queued mark (its message arrived), so a sweep may take the endpoint's next row
 * as soon as this send settles. Null: not due, held, done, expired, or its endpoint busy.
 */
export async function claimDelivery(
  db: Db,
  id: string,
  now: number,
  leaseMs: number,
  payload: string,
): Promise<ClaimedDelivery | null> {
  const rows = await db.all<ClaimedDelivery>(sql`
    UPDATE ${webhookDeliveries} SET attempts = attempts + 1, lease_until = ${now + leaseMs}, last_attempt_at = ${now},
      enqueued_until = NULL, payload = coalesce(payload, ${payload})
    WHERE id = ${id} AND ${claimable(now)} AND ${withinWindow(sql`webhook_deliveries`, now)}
      AND ${endpointFreeFor(id, sql`webhook_deliveries`, now)}
      -- A message queued before its owner was disabled sends nothing; the sweep takes the row again once re-enabled.
      AND NOT ${accountDisabled(sql`(SELECT w.user_id FROM ${webhooks} w WHERE w.id = webhook_deliveries.webhook_id)`)}
    RETURNING id, webhook_id AS webhookId, event, job_id AS jobId, occurred_at AS occurredAt, attempts, payload,
      last_attempt_at AS claimedAt,
      coalesce(series_started_at, created_at) AS seriesStartedAt,
      (SELECT w.url FROM ${webhooks} w WHERE w.id = webhook_id) AS url,
      (SELECT w.secret FROM ${webhooks} w WHERE w.id = webhook_id) AS secret,
      (SELECT w.retiring_secrets FROM ${webhooks} w WHERE w.id = webhook_id) AS retiringSecrets,
      (SELECT w.user_id FROM ${webhooks} w WHERE w.id = webhook_id) AS userId,
      (SELECT w.failures FROM ${webhooks} w WHERE w.id = webhook_id) AS endpointFailures,
      (SELECT w.held_until FROM ${webhooks} w WHERE w.id = webhook_id) AS endpointHeldUntil`);
  return rows[0] ?? null;
}
