import { sql, type SQL } from "drizzle-orm";
import { TooManyRequestsError } from "../../errors";
import { webhookDeliveries } from "../../schema";
import { sentByHand } from "./endpoint-hold";

/**
 * Pending test events and redeliveries a webhook may have for another one to be accepted. Automatic job events are
 * never refused (they are bounded by the jobs themselves) and do not count: a test is most wanted just when an
 * outage left many of them waiting. A user's own clicks are bounded, so no one can fill the shared queue and the
 * sweep with sends to an endpoint that does not answer (each skips its endpoint's hold once: endpoint-hold.ts).
 */
export const MANUAL_SEND_PENDING_LIMIT = 10;

/** SQL: the webhook `webhookId` (a column or a value) has room for one more manual send (read off its hand-sent rows' index). */
export const hasRoomForManualSend = (webhookId: SQL | string): SQL =>
  sql`(SELECT count(*) FROM ${webhookDeliveries} p INDEXED BY webhook_deliveries_hand_sent_idx
      WHERE p.webhook_id = ${webhookId} AND p.status = 'pending' AND ${sentByHand(sql`p`)})
    < ${MANUAL_SEND_PENDING_LIMIT}`;

export const tooManyPending = () =>
  new TooManyRequestsError(
    `${MANUAL_SEND_PENDING_LIMIT} test events or redeliveries to this webhook are still being attempted; wait for them to be delivered or to fail`,
    60,
    "too_many_pending",
  );
