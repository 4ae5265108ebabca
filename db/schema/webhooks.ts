import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { users } from "./users";

export const WEBHOOK_EVENTS = ["job.completed", "job.cancelled", "job.failed", "job.paused"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];
/** Sent only by `POST /api/webhooks/:id/test`. */
export const WEBHOOK_TEST_EVENT = "webhook.test";

export const DELIVERY_STATUSES = ["pending", "delivered", "failed"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** An endpoint a user subscribed to job events (Standard Webhooks). */
export const webhooks = sqliteTable(
  "webhooks",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    url: text("url").notNull(),
    /**
     * `whsec_<base64>`; kept as is because signing needs the key itself (unlike API tokens, a hash is useless
     * here). Shown once at creation, never returned by the API afterwards, never logged.
     */
    secret: text("secret").notNull(),
    /**
     * Secrets replaced by a rotation that still sign every delivery until their time is up, so a receiver keeps
     * verifying while it switches to the new one: JSON `[{ "secret", "until" }]`, newest first (retiring-secrets.ts).
     * Null: none.
     */
    retiringSecrets: text("retiring_secrets"),
    /** JSON array of WebhookEvent; the jobs trigger (migration 0007) matches the event name against it. */
    events: text("events").notNull(),
    createdAt: integer("created_at").notNull(),
    /**
     * Attempts in a row that failed at the endpoint (no answer, 5xx, 408, 429), across its deliveries; a 2xx or
     * any other answer resets it. The endpoint's backoff grows with it (db/queries/webhooks/endpoint-hold.ts).
     */
    failures: integer("failures").notNull().default(0),
    /** The endpoint is failing: nothing is sent to it before this time (except what its user sends by hand). */
    heldUntil: integer("held_until"),
    /** The `Idempotency-Key` of the POST that created it: a retry after a lost answer gets this webhook back. */
    idempotencyKey: text("idempotency_key"),
    /** What that POST asked for (normalised url, sorted events): a repeat of the key must ask the same, edits aside. */
    idempotencyFingerprint: text("idempotency_fingerprint"),
  },
  (t) => [index("webhooks_user_idx").on(t.userId), uniqueIndex("webhooks_user_idempotency_key_idx").on(t.userId, t.idempotencyKey)],
);

/**
 * The outbox: one row per (webhook, event occurrence); a row of a job's event still waiting for its first try is
 * replaced by the next occurrence of the same kind. Job events are inserted by the `jobs_webhook_outbox` trigger
 * (migrations 0007, 0024) in the very statement that moves the job, wherever it runs (edge, runner, cron), so an event
 * exists exactly when its transition committed. The row is the truth about delivery; queue messages only say
 * "look at this row now".
 */
export const webhookDeliveries = sqliteTable(
  "webhook_deliveries",
  {
    /** Also the `webhook-id` header: the same for every attempt, so receivers can deduplicate. */
    id: text("id").primaryKey(),
    webhookId: text("webhook_id")
      .notNull()
      .references(() => webhooks.id, { onDelete: "cascade" }),
    /** No foreign key on purpose: the event outlives a job deleted right after it finished. Null for test events. */
    jobId: text("job_id"),
    event: text("event").notNull(),
    /** When the transition happened (the job's updated_at it wrote); the payload's `timestamp`. */
    occurredAt: integer("occurred_at").notNull(),
    status: text("status", { enum: DELIVERY_STATUSES }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    /** A pending row is due from this time on (backoff after a failed attempt). */
    nextAttemptAt: integer("next_attempt_at").notNull(),
    /** Set while one consumer is sending it, so a duplicate queue message does not send it twice at once. */
    leaseUntil: integer("lease_until"),
    /**
     * A sweep put a queue message for it on the queue and sweeps leave it alone until then: without it, every sweep
     * (every 5 s, and after each job-changing request) queued the same waiting rows again, so a queue that fell
     * behind was fed more duplicates the further behind it was. A hint only: claims ignore it.
     */
    enqueuedUntil: integer("enqueued_until"),
    lastAttemptAt: integer("last_attempt_at"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    deliveredAt: integer("delivered_at"),
    /** The exact body of the first attempt, reused by retries and redeliveries (same id, same bytes). */
    payload: text("payload"),
    createdAt: integer("created_at").notNull(),
    /**
     * Start of the current 24-hour delivery window (a redelivery starts a new one); null: created_at. A row still
     * pending at its end fails, whether it was attempted or waited behind its endpoint's failures the whole time.
     */
    seriesStartedAt: integer("series_started_at"),
  },
  (t) => [
    uniqueIndex("webhook_deliveries_occurrence_uq").on(t.webhookId, t.jobId, t.event, t.occurredAt),
    index("webhook_deliveries_due_idx").on(t.status, t.nextAttemptAt),
    index("webhook_deliveries_webhook_idx").on(t.webhookId, t.createdAt),
    // An endpoint's pending rows in pick order (endpoint-hold.ts pickOrder): its next try without sorting its
    // backlog; and which endpoints have pending rows at all (the sweep visits only those).
    index("webhook_deliveries_pending_idx")
      .on(t.webhookId, t.lastAttemptAt, t.nextAttemptAt, t.id)
      .where(sql`status = 'pending'`),
    // An endpoint's pending rows by when they are due: does it have a due row at all (rows that each wait out their own
    // backoff — a receiver answering 4xx to everything — are not walked in pick order to find there is none)?
    index("webhook_deliveries_pending_due_idx")
      .on(t.webhookId, t.nextAttemptAt)
      .where(sql`status = 'pending'`),
    // Rows with a lease or a queued mark (few: settles, claims and releases clear them): is an endpoint busy?
    index("webhook_deliveries_marked_idx")
      .on(t.webhookId)
      .where(sql`status = 'pending' AND (lease_until IS NOT NULL OR enqueued_until IS NOT NULL)`),
    // The user's pending tests and redeliveries (at most MANUAL_SEND_PENDING_LIMIT per endpoint): the untried ones go
    // even to a held endpoint, and they are counted for the limit, both without reading the endpoint's backlog.
    index("webhook_deliveries_hand_sent_idx")
      .on(t.webhookId)
      .where(sql`status = 'pending' AND (event = 'webhook.test' OR series_started_at IS NOT NULL)`),
    // Rows waiting out an endpoint failure (endpoint-hold.ts failedAtEndpoint): made due when the endpoint answers.
    index("webhook_deliveries_endpoint_failed_idx")
      .on(t.webhookId)
      .where(sql`status = 'pending' AND attempts > 0 AND (last_status_code IS NULL OR last_status_code >= 500 OR last_status_code IN (408, 429))`),
    // Pending rows by the start of their 24-hour window: the expiry finds the few past it without reading the rest.
    index("webhook_deliveries_window_idx").on(t.status, sql`coalesce(series_started_at, created_at)`),
  ],
);
